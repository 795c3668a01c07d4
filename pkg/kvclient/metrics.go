package kvclient

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// Metrics are the client-side Prometheus series of the Clients given it with WithMetrics:
// a service that embeds the SDK registers them with its own registry and so sees its calls
// to putallkv as its callers see them (retries and waits for a batch included). A nil
// *Metrics records nothing.
type Metrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	retries *prometheus.CounterVec
	batches *prometheus.HistogramVec
}

// Batch sources, the values of the source label of putallkv_client_batch_size.
const (
	sourceBatcher    = "batcher"
	sourceCoalescing = "coalescing"
)

// NewMetrics registers the SDK's series on reg:
//
//   - putallkv_client_calls_total{method,code}: calls made, by method and outcome (OK or the
//     error's code), each counted once whatever its retries;
//   - putallkv_client_call_duration_seconds{method}: a call's duration, retries and backoff
//     included;
//   - putallkv_client_retries_total{method,outcome}: retries "sent", or "over_budget" when the
//     retry budget refused one (see WithRetryBudget);
//   - putallkv_client_batch_size{source}: entries in each PutAll the Batcher sends (source
//     "batcher") and calls in each round trip of coalescing ("coalescing", 1 for a call that
//     went by itself).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "putallkv", Subsystem: "client", Name: "calls_total",
			Help: "Calls made by the Go SDK, by method and outcome code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "putallkv", Subsystem: "client", Name: "call_duration_seconds",
			Help:    "Duration of the Go SDK's calls, retries included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10), // 50µs .. ~13s
		}, []string{"method"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "putallkv", Subsystem: "client", Name: "retries_total",
			Help: "Retries of the Go SDK: sent, or refused by the retry budget (over_budget).",
		}, []string{"method", "outcome"}),
		batches: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "putallkv", Subsystem: "client", Name: "batch_size",
			Help:    "Entries per Batcher PutAll (batcher) and calls per coalesced round trip (coalescing).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency, m.retries, m.batches} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// WithMetrics records the Client's calls in m (see NewMetrics); several Clients may share
// one Metrics.
func WithMetrics(m *Metrics) Option {
	return func(o *options) { o.metrics = m }
}

// called records a call of method that began at start and ended with e (nil for success).
func (m *Metrics) called(method string, start time.Time, e *Error) {
	if m == nil {
		return
	}
	code := kv.ErrorCode_OK
	if e != nil {
		code = e.Code
	}
	m.calls.WithLabelValues(method, code.String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// retried records a retry of method that the budget allowed (sent) or refused.
func (m *Metrics) retried(method string, sent bool) {
	if m == nil {
		return
	}
	outcome := "sent"
	if !sent {
		outcome = "over_budget"
	}
	m.retries.WithLabelValues(method, outcome).Inc()
}

// batched records a batch of n from source.
func (m *Metrics) batched(source string, n int) {
	if m != nil {
		m.batches.WithLabelValues(source).Observe(float64(n))
	}
}
