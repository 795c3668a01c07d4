package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Durability turns the write-ahead log's and the durable store's events into Prometheus
// metrics: it is a wal.Observer and a store.DurabilityObserver by its methods alone, so this
// package imports neither and the store knows nothing of Prometheus.
type Durability struct {
	fsync       prometheus.Histogram
	groupCommit prometheus.Histogram
	bytes       prometheus.Counter
	snapshot    *prometheus.HistogramVec
	recovery    prometheus.Gauge
	recovered   prometheus.Gauge
}

// NewDurability registers the durability metrics (putallkv_wal_*, putallkv_snapshot_duration_seconds,
// putallkv_recovery_duration_seconds, putallkv_recovered_records) on reg.
func NewDurability(reg prometheus.Registerer) (*Durability, error) {
	m := &Durability{
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "wal_fsync_seconds",
			Help:      "Duration of write-ahead log fsyncs.",
			Buckets:   prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. ~1.6s
		}),
		groupCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "wal_group_commit_size",
			Help:      "Records written to the log by one write call (group commit).",
			Buckets:   prometheus.ExponentialBuckets(1, 2, 12),
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "wal_bytes_total", Help: "Bytes written to the log."}),
		snapshot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "snapshot_duration_seconds",
			Help:      "Duration of snapshots, by outcome (ok, error).",
			Buckets:   prometheus.ExponentialBuckets(1e-3, 4, 10),
		}, []string{"outcome"}),
		recovery:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "recovery_duration_seconds", Help: "How long start-up recovery took."}),
		recovered: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "recovered_records", Help: "Log records replayed at start-up."}),
	}
	for _, c := range []prometheus.Collector{m.fsync, m.groupCommit, m.bytes, m.snapshot, m.recovery, m.recovered} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// WatchJournal registers putallkv_wal_failing on reg: 1 while failing returns an error (the
// write-ahead log refusing writes after an I/O error or on a full disk, when /readyz answers
// 503 too), else 0, read at each scrape. No event marks the log's recovery, so the gauge asks
// rather than counts.
func WatchJournal(reg prometheus.Registerer, failing func() error) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "wal_failing",
		Help:      "1 while the write-ahead log refuses writes (an I/O error, a full disk), else 0.",
	}, func() float64 {
		if failing() != nil {
			return 1
		}
		return 0
	}))
}

// Wrote implements wal.Observer.
func (m *Durability) Wrote(records, bytes int) {
	m.groupCommit.Observe(float64(records))
	m.bytes.Add(float64(bytes))
}

// Synced implements wal.Observer.
func (m *Durability) Synced(d time.Duration) { m.fsync.Observe(d.Seconds()) }

// Recovered implements store.DurabilityObserver.
func (m *Durability) Recovered(d time.Duration, records uint64, _ int64) {
	m.recovery.Set(d.Seconds())
	m.recovered.Set(float64(records))
}

// Snapshotted implements store.DurabilityObserver.
func (m *Durability) Snapshotted(d time.Duration, _ int64, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.snapshot.WithLabelValues(outcome).Observe(d.Seconds())
}
