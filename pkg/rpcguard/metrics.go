package rpcguard

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/pkg/metrics"
)

// Metrics counts the requests the RPC port refused, by reason, so that an operator sees a
// flood of hostile or broken requests that the rate-limited log line only samples.
type Metrics struct {
	refused *prometheus.CounterVec
}

// NewMetrics registers putallkv_rpc_requests_refused_total{reason="too_large"|"malformed"} on reg.
// One Metrics serves a server's Codec (see Codec.CountRefusals).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace,
		Name:      "rpc_requests_refused_total",
		Help:      "RPC requests refused before decoding: too_large (over server.max_request_bytes) or malformed.",
	}, []string{"reason"})}
	for _, reason := range []string{"too_large", "malformed"} {
		m.refused.WithLabelValues(reason) // present at 0 from the start
	}
	if err := reg.Register(m.refused); err != nil {
		return nil, err
	}
	return m, nil
}

// count counts r; a nil Metrics counts nothing.
func (m *Metrics) count(r *refusal) {
	if m == nil {
		return
	}
	reason := "malformed"
	if r.typeID == TypeTooLarge {
		reason = "too_large"
	}
	m.refused.WithLabelValues(reason).Inc()
}
