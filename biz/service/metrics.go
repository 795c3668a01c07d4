package service

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"putallkv/kitex_gen/kv"
	"putallkv/pkg/limiter"
	"putallkv/pkg/store"
)

// metrics are the service's Prometheus instruments.
type metrics struct {
	requests        *prometheus.CounterVec
	batchSize       prometheus.Histogram
	putAllLatency   *prometheus.HistogramVec
	limiterWait     prometheus.Histogram
	limiterRejected *prometheus.CounterVec
	chunkSize       prometheus.Histogram
	suggestedBatch  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, engine store.Engine, idem *idempotency, bucket *limiter.Bucket) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kv_requests_total",
			Help: "Calls of each KVService method, by method and outcome code.",
		}, []string{"method", "code"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "putall_batch_size",
			Help:    "Entries per PutAll call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
		}),
		putAllLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "putall_latency_seconds",
			Help:    "Time spent in PutAll inside the service, by mode and outcome code.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12), // 1µs .. ~4s
		}, []string{"mode", "outcome"}),
		limiterWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "limiter_wait_seconds",
			Help:    "Time admitted writes waited for tokens.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 4, 9), // 100µs .. ~6.5s
		}),
		limiterRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "limiter_rejected_total",
			Help: "Writes (or, for best_effort, batch remainders) refused by admission, by mode.",
		}, []string{"mode"}),
		chunkSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "putall_chunk_size",
			Help:    "Entries per chunk of admission-chunked BEST_EFFORT writes.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		suggestedBatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "putall_suggested_batch",
			Help: "The suggested_batch of the latest write response.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.requests, m.batchSize, m.putAllLatency, m.limiterWait, m.limiterRejected, m.chunkSize, m.suggestedBatch,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "limiter_tokens", Help: "Write-admission tokens in hand (+Inf when unlimited)."},
			bucket.Tokens),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "store_keys", Help: "Keys resident in the store, including expired keys not yet swept."},
			func() float64 { return float64(engine.Stats().Keys) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "store_revision", Help: "Revision of the store's latest write."},
			func() float64 { return float64(engine.Stats().Revision) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "idempotency_records", Help: "request_ids whose responses are remembered."},
			func() float64 { return float64(idem.size()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts a call of method by its outcome code; it is deferred with a pointer to the
// method's named error result.
func (m *metrics) observe(method string, err *error) {
	m.requests.WithLabelValues(method, codeOf(*err).String()).Inc()
}

// observePutAll records a PutAll's size and latency.
func (m *metrics) observePutAll(req *kv.PutAllRequest, err error, start time.Time) {
	m.batchSize.Observe(float64(len(req.Entries)))
	mode := "invalid"
	if sm, merr := storeMode(req.Mode); merr == nil {
		mode = sm.String()
	}
	m.putAllLatency.WithLabelValues(mode, strings.ToLower(codeOf(err).String())).Observe(time.Since(start).Seconds())
}
