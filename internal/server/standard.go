package server

import (
	"context"
	"sync"

	"github.com/cloudwego/hertz/pkg/app"
	hertztracer "github.com/cloudwego/hertz/pkg/common/tracer"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/stats"
	hertzprom "github.com/hertz-contrib/monitor-prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// The standard CloudWeGo series, which stock Kitex and Hertz dashboards read, are those of
// kitex-contrib/monitor-prometheus (kitex_server_throughput, kitex_server_latency_us: made here,
// see kitexTracer) and hertz-contrib/monitor-prometheus (hertz_server_throughput, hertz_server_latency_us), on the
// program's own registry (served at admin /metrics, not on a listener of their own). Their
// labels are bounded here, since each label value a client can choose would be a series kept
// until exit: see kitexTracer and hertzTracer.

// latencyBuckets (in microseconds, the unit of the standard series) reach from 50µs to ~13s;
// the contrib default starts at 5ms, above most calls of this service.
var latencyBuckets = prometheus.ExponentialBuckets(50, 4, 10)

// kitexTracer returns the Kitex server tracer of the standard series: kitex_server_throughput
// and kitex_server_latency_us, as kitex-contrib/monitor-prometheus's server tracer makes them
// (the same names, help, labels and latency, from the call's RPCStart to its RPCFinish), but
// with the labels a client chooses fixed (caller "unknown", retry "0": a client sends them in
// its TTHeader as it likes, a series each), so that the series stay one per method and status.
// Each series is looked up once and kept: the contrib tracer built two label maps and hashed
// them on every call, 8 % of the server's CPU under 50 callers of PutAll through the plain SDK.
func kitexTracer(reg *prometheus.Registry) stats.Tracer {
	labels := []string{"caller", "callee", "method", "status", "retry"}
	t := &kitexStandard{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kitex_server_throughput",
			Help: "Total number of RPCs completed by the server, regardless of success or failure."}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kitex_server_latency_us",
			Help:    "Latency (microseconds) of RPC that had been application-level handled by the server.",
			Buckets: latencyBuckets}, labels),
	}
	reg.MustRegister(t.calls, t.latency)
	return t
}

// kitexStandard is the tracer kitexTracer returns.
type kitexStandard struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	series  sync.Map // kitexSeriesKey → *kitexSeries, one per series used so far
}

// kitexSeriesKey names the series of a call.
type kitexSeriesKey struct {
	callee, method string
	failed         bool
}

// kitexSeries is one series of each metric.
type kitexSeries struct {
	calls   prometheus.Counter
	latency prometheus.Observer
}

// Start implements stats.Tracer.
func (t *kitexStandard) Start(ctx context.Context) context.Context { return ctx }

// Finish implements stats.Tracer: the call counts in its series.
func (t *kitexStandard) Finish(ctx context.Context) {
	ri := rpcinfo.GetRPCInfo(ctx)
	if ri == nil || ri.Stats() == nil || ri.Stats().Level() == stats.LevelDisabled {
		return
	}
	start, finish := ri.Stats().GetEvent(stats.RPCStart), ri.Stats().GetEvent(stats.RPCFinish)
	if start == nil || finish == nil {
		return
	}
	key := kitexSeriesKey{callee: ri.To().ServiceName(), method: ri.To().Method(), failed: ri.Stats().Error() != nil}
	s, ok := t.series.Load(key)
	if !ok {
		s, _ = t.series.LoadOrStore(key, t.newSeries(key))
	}
	series := s.(*kitexSeries)
	series.calls.Inc()
	series.latency.Observe(float64(finish.Time().Sub(start.Time()).Microseconds()))
}

// newSeries returns the series of key's calls.
func (t *kitexStandard) newSeries(key kitexSeriesKey) *kitexSeries {
	status := "succeed"
	if key.failed {
		status = "error"
	}
	values := []string{"unknown", orUnknown(key.callee), orUnknown(key.method), status, "0"}
	return &kitexSeries{calls: t.calls.WithLabelValues(values...), latency: t.latency.WithLabelValues(values...)}
}

// orUnknown is v, or "unknown" when v is empty (as the contrib tracer labels it).
func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// hertzTracer returns the Hertz server tracer of the standard series. The contrib tracer labels
// each request with its method, which a client may make up; requests whose method is not one
// of HTTP's standard ones are left out of the standard series (the gateway's own
// putallkv_gateway_http_requests_total counts them).
func hertzTracer(reg *prometheus.Registry) hertztracer.Tracer {
	return boundedHertzTracer{hertzprom.NewServerTracer("", "",
		hertzprom.WithRegistry(reg), hertzprom.WithDisableServer(true), hertzprom.WithHistogramBuckets(latencyBuckets))}
}

type boundedHertzTracer struct{ hertztracer.Tracer }

// standardMethods are the HTTP methods the standard series label requests with.
var standardMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "CONNECT": true, "OPTIONS": true, "TRACE": true}

// Finish implements hertztracer.Tracer.
func (t boundedHertzTracer) Finish(ctx context.Context, c *app.RequestContext) {
	if standardMethods[string(c.Request.Method())] {
		t.Tracer.Finish(ctx, c)
	}
}
