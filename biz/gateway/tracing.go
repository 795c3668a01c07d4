package gateway

import (
	"context"
	"strings"

	"github.com/cloudwego/hertz/pkg/app"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/pkg/tracing"
)

// noSpan is the span of a request when tracing is off: its methods do nothing.
var noSpan = trace.SpanFromContext(context.Background())

// startSpan makes the request a server span, in the trace its caller sent (the W3C traceparent
// and tracestate headers), else in a trace of its own; sampling follows the provider's sampler
// (a caller's sampled flag is kept). The span is named for the request's method until endSpan
// knows its route. The calls to the service below it (the PutAll span and its stages, or the
// SDK's RPC in a gateway tier) are its children.
func (g *Gateway) startSpan(ctx context.Context, c *app.RequestContext) (context.Context, trace.Span) {
	h := &c.Request.Header
	ctx = tracing.FromHeaders(ctx, func(name string) string { return string(h.Peek(name)) })
	return g.spans.Start(ctx, "HTTP "+string(c.Request.Method()), trace.WithSpanKind(trace.SpanKindServer))
}

// endSpan names span for its route ("POST /v1/kv:putAll": the method and the route's
// template, OpenTelemetry's HTTP convention; a request no route took keeps its first name),
// sets its attributes and status (an error for a 5xx answer), and ends it.
func endSpan(span trace.Span, c *app.RequestContext, route string, status int, id string) {
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", string(c.Request.Method())),
			attribute.Int("http.response.status_code", status), tracing.RequestID.String(id))
		if _, template, ok := strings.Cut(route, " "); ok {
			span.SetName(route)
			span.SetAttributes(attribute.String("http.route", template))
		}
		if status >= 500 {
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}
