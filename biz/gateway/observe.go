package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/prometheus/client_golang/prometheus"

	pkgmetrics "github.com/putallkv/putallkv/pkg/metrics"
	"github.com/putallkv/putallkv/pkg/traceid"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// observe is the middleware every request passes through, matched or not. It marks the
// connection busy until the handlers are done (see conns), makes the request a span when
// tracing is on (see startSpan), settles the trace id (X-Request-ID, echoed, and put in ctx
// so the SDK sends it on to the RPC server; without one, the span's trace id),
// turns a panic into a 500 problem, answers in problem+json what no handler answered (404, 405,
// and what Hertz refuses before routing), and writes the access-log line and the metrics.
func (g *Gateway) observe(ctx context.Context, c *app.RequestContext) {
	start := time.Now()
	handling(ctx)
	enterStep(ctx, stepBusy)
	defer enterStep(ctx, stepResponding)
	span := noSpan
	if g.spans != nil {
		ctx, span = g.startSpan(ctx, c)
	}
	id := traceID(&c.Request.Header, tracing.TraceID(ctx))
	c.Response.Header.Set(headerTraceID, id)
	ctx = traceid.With(ctx, id)
	g.guard(ctx, c)

	route := c.GetString(routeKey)
	if route == "" {
		route = routeUnmatched
		g.answerUnmatched(ctx, c)
	}
	status := c.Response.StatusCode()
	endSpan(span, c, route, status, id)
	latency := time.Since(start)
	g.metrics.observe(route, status, latency)
	if !g.access.logs(status) {
		return
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, "http request",
		slog.String("method", string(c.Request.Method())),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int("bytes", len(c.Response.Body())),
		slog.Duration("latency", latency),
		slog.String("request_id", id),
	)
}

// AccessLog says which requests get an access-log line (Options.AccessLog).
type AccessLog string

// The access-log settings. A line costs about as much as the gateway's own handling of a
// small batch (formatting and writing it, under the logger's lock), so by default only
// refusals and failures get one; the metrics count every request either way.
const (
	// AccessLogErrors logs the requests answered with a status of 400 or more, and those
	// refused before routing. It is the default ("" means it too).
	AccessLogErrors AccessLog = "errors"
	// AccessLogAll logs every request.
	AccessLogAll AccessLog = "all"
	// AccessLogOff logs none.
	AccessLogOff AccessLog = "off"
)

// logs reports whether a request answered with status gets a line.
func (a AccessLog) logs(status int) bool {
	switch a {
	case AccessLogAll:
		return true
	case AccessLogOff:
		return false
	}
	return status >= 400
}

// guard runs the rest of the chain, answering a panic with INTERNAL.
func (g *Gateway) guard(ctx context.Context, c *app.RequestContext) {
	defer func() {
		if p := recover(); p != nil {
			id, _ := traceid.From(ctx)
			g.log.ErrorContext(ctx, "gateway: panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "request_id", id)
			c.Response.ResetBody()
			g.writeError(ctx, c, internalError)
		}
	}()
	c.Next(ctx)
}

// answerUnmatched answers in problem+json a request no handler took, which Hertz gave a
// status and, after this middleware, would give a text/plain body. A 405 is kept only for a
// path that is a route for other methods: Hertz also says 405 for paths like /v1/kv that only
// match the batch route's /v1/:op pattern.
func (g *Gateway) answerUnmatched(ctx context.Context, c *app.RequestContext) {
	if len(c.Response.Body()) > 0 {
		return
	}
	e := &apiError{code: codeRouteNotFound, detail: "no route for this path; the API is under /v1/kv/ and /v1/kv:"}
	switch c.Response.StatusCode() {
	case 404:
	case 405:
		if allow := g.allowedMethods(string(c.Request.URI().PathOriginal())); allow != "" {
			c.Response.Header.Set("Allow", allow)
			e = &apiError{code: codeMethodNotAllowed, detail: "this path does not take this method; see Allow"}
		}
	case 400:
		e = invalid("the request is malformed")
	default:
		return
	}
	g.writeError(ctx, c, e)
}

// metrics are the gateway's Prometheus instruments.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	open     prometheus.Gauge
	refused  prometheus.Counter
	timedOut *prometheus.CounterVec
}

// newMetrics makes the instruments.
func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "gateway_http_requests_total",
			Help:      "HTTP requests served by the gateway, by route and status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "gateway_http_request_duration_seconds",
			Help:      "Time from reading a request's headers to writing its response, by route.",
			Buckets:   prometheus.ExponentialBuckets(50e-6, 4, 10), // 50µs .. ~13s
		}, []string{"route"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "gateway_http_connections",
			Help:      "Connections the gateway serves now (at most gateway.max_connections).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "gateway_http_connections_refused_total",
			Help:      "Connections answered 503 and closed because gateway.max_connections were open.",
		}),
		timedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: pkgmetrics.Namespace,
			Name:      "gateway_http_connections_timed_out_total",
			Help:      "Connections closed for taking too long at a step: idle, header, body or responding.",
		}, []string{"step"}),
	}
}

// register exposes the instruments on reg; nil registers them nowhere.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.open, m.refused, m.timedOut} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) observe(route string, status int, latency time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(latency.Seconds())
}
