package service

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/limiter"
	pkgmetrics "github.com/putallkv/putallkv/pkg/metrics"
	"github.com/putallkv/putallkv/pkg/store"
)

// method numbers the KVService methods for the metrics' label caches.
type method int

const (
	mPut method = iota
	mGet
	mDelete
	mPutAll
	mGetAll
	mDeleteAll
	mPutAllMany
	mScan
	nMethods
)

var methodNames = [nMethods]string{"Put", "Get", "Delete", "PutAll", "GetAll", "DeleteAll", "PutAllMany", "Scan"}

// nCodes bounds kv.ErrorCode values (INTERNAL is the last).
const nCodes = int(kv.ErrorCode_INTERNAL) + 1

// codeIndex is code as an index below nCodes (an unknown code counts as INTERNAL).
func codeIndex(code kv.ErrorCode) int {
	if code < 0 || int(code) >= nCodes {
		return int(kv.ErrorCode_INTERNAL)
	}
	return int(code)
}

// children caches the children of a metric vector by a small integer key, so the hot path is
// an atomic load instead of hashing label strings; a child is created on first use.
type children[T any] struct {
	slots  []atomic.Pointer[T]
	create func(key int) T
}

func newChildren[T any](n int, create func(key int) T) *children[T] {
	return &children[T]{slots: make([]atomic.Pointer[T], n), create: create}
}

func (c *children[T]) get(key int) T {
	if p := c.slots[key].Load(); p != nil {
		return *p
	}
	v := c.create(key) // racing creators get the same child from the vector
	c.slots[key].Store(&v)
	return v
}

// latencyModes are the mode labels of putall_latency_seconds; "invalid" for a bad mode.
var latencyModes = [...]string{store.Atomic.String(), store.BestEffort.String(), "invalid"}

// metrics are the service's Prometheus instruments.
type metrics struct {
	requests        *prometheus.CounterVec
	requestsBy      *children[prometheus.Counter] // method*nCodes + code
	keys            *prometheus.CounterVec
	keysBy          *children[prometheus.Counter] // method*nCodes + code
	batchSize       prometheus.Histogram
	putAllLatency   *prometheus.HistogramVec
	latencyBy       *children[prometheus.Observer] // mode*nCodes + code
	limiterWait     prometheus.Histogram
	limiterRejected *prometheus.CounterVec
	chunkSize       prometheus.Histogram
	suggestedBatch  prometheus.Gauge
	loadStreams     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, engine store.Engine, idem *idempotency, bucket *limiter.Bucket) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "kv_requests_total",
			Help:      "Calls of each KVService method, by method and outcome code.",
		}, []string{"method", "code"}),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "kv_keys_total",
			Help:      "Keys (entries) named by calls of each KVService method, by method and the call's outcome code; a PutAllMany's keys count under PutAll.",
		}, []string{"method", "code"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "putall_batch_size",
			Help:      "Entries per PutAll call.",
			Buckets:   prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
		}),
		putAllLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "putall_latency_seconds",
			Help:      "Time spent in PutAll inside the service, by mode and outcome code.",
			Buckets:   prometheus.ExponentialBuckets(1e-6, 4, 12), // 1µs .. ~4s
		}, []string{"mode", "outcome"}),
		limiterWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "limiter_wait_seconds",
			Help:      "Time admitted writes waited for tokens.",
			Buckets:   prometheus.ExponentialBuckets(1e-4, 4, 9), // 100µs .. ~6.5s
		}),
		limiterRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "limiter_rejected_total",
			Help:      "Writes (or, for best_effort, batch remainders) refused by admission, by mode.",
		}, []string{"mode"}),
		chunkSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "putall_chunk_size",
			Help:      "Entries per chunk of admission-chunked BEST_EFFORT writes.",
			Buckets:   prometheus.ExponentialBuckets(1, 2, 14),
		}),
		suggestedBatch: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "putall_suggested_batch",
			Help:      "The suggested_batch of the latest write response.",
		}),
		loadStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "load_streams",
			Help:      "Load streams open now.",
		}),
	}
	m.requestsBy = newChildren(int(nMethods)*nCodes, func(k int) prometheus.Counter {
		return m.requests.WithLabelValues(methodNames[k/nCodes], kv.ErrorCode(k%nCodes).String())
	})
	m.keysBy = newChildren(int(nMethods)*nCodes, func(k int) prometheus.Counter {
		return m.keys.WithLabelValues(methodNames[k/nCodes], kv.ErrorCode(k%nCodes).String())
	})
	m.latencyBy = newChildren(len(latencyModes)*nCodes, func(k int) prometheus.Observer {
		return m.putAllLatency.WithLabelValues(latencyModes[k/nCodes], strings.ToLower(kv.ErrorCode(k%nCodes).String()))
	})
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.requests, m.keys, m.batchSize, m.putAllLatency, m.limiterWait, m.limiterRejected, m.chunkSize, m.suggestedBatch, m.loadStreams,
		gaugeFunc("limiter_tokens", "Write-admission tokens in hand (+Inf when unlimited).",
			bucket.Tokens),
		gaugeFunc("store_keys", "Keys resident in the store, including expired keys not yet swept.",
			func() float64 { return float64(engine.Stats().Keys) }),
		gaugeFunc("store_revision", "Revision of the store's latest write.",
			func() float64 { return float64(engine.Stats().Revision) }),
		gaugeFunc("store_bytes", "Bytes the resident keys count against store.max_bytes: key and value bytes, and 64 a key.",
			func() float64 { return float64(engine.Stats().Bytes) }),
		gaugeFunc("store_max_bytes", "The memory quota, store.max_bytes (0: none).",
			func() float64 { return float64(engine.Stats().MaxBytes) }),
		counterFunc("store_quota_refusals_total", "Writes refused RESOURCE_EXHAUSTED because they would have crossed store.max_bytes.",
			func() float64 { return float64(engine.Stats().QuotaRefusals) }),
		gaugeFunc("idempotency_records", "request_ids whose responses are remembered.",
			func() float64 { n, _, _ := idem.stats(); return float64(n) }),
		gaugeFunc("idempotency_bytes", "Bytes the idempotency records hold, as idempotency.max_bytes counts them.",
			func() float64 { _, b, _ := idem.stats(); return float64(b) }),
		gaugeFunc("idempotency_max_bytes", "The bound on idempotency_bytes (idempotency.max_bytes).",
			func() float64 { return float64(idem.maxBytes) }),
		counterFunc("idempotency_evictions_total", "Records evicted inside idempotency.window because idempotency.max_bytes was reached: a retry of their call runs again.",
			func() float64 { _, _, e := idem.stats(); return float64(e) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// gaugeFunc is a gauge of the service's namespace whose value f reads at each scrape.
func gaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: pkgmetrics.Namespace, Name: name, Help: help}, f)
}

// counterFunc is a counter of the service's namespace whose value f reads at each scrape.
func counterFunc(name, help string, f func() float64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: pkgmetrics.Namespace, Name: name, Help: help}, f)
}

// observe counts a call of method naming keys keys by its outcome code; it is deferred with a
// pointer to the method's named error result.
func (m *metrics) observe(method method, keys int, err *error) {
	k := int(method)*nCodes + codeIndex(codeOf(*err))
	m.requestsBy.get(k).Inc()
	if keys > 0 {
		m.keysBy.get(k).Add(float64(keys))
	}
}

// observePutAll records a PutAll's size and latency.
func (m *metrics) observePutAll(req *kv.PutAllRequest, err error, start time.Time) {
	m.batchSize.Observe(float64(len(req.Entries)))
	mode := len(latencyModes) - 1 // invalid
	if sm, merr := storeMode(req.Mode); merr == nil {
		mode = int(sm)
	}
	m.latencyBy.get(mode*nCodes + codeIndex(codeOf(err))).Observe(time.Since(start).Seconds())
}
