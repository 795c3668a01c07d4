package kvclient

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/pkg/traceid"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// WithTracerProvider makes each call an OpenTelemetry client span of tp (kv.KVService/<method>,
// one span for the call and all its attempts), whose W3C trace context goes to the server in
// TTHeader: the server's spans of the call are its children. Without it the client makes no
// spans, but a call whose context holds a span (the caller's own) still carries that span's
// trace context, so the server's spans join the caller's trace. Either way a call with no trace
// id of its own (package traceid) takes its trace's id, so logs and traces share one id.
//
// The provider, its sampler and its exporter are the caller's: this package links the
// OpenTelemetry API only. A nil tp makes no spans.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		o.tracer = nil
		if tp != nil {
			o.tracer = tracing.Tracer(tp)
		}
	}
}

// noSpan is the span of a call when the client makes none: its methods do nothing.
var noSpan = trace.SpanFromContext(context.Background())

// rpcService is the service name of RPC spans (the IDL's namespace and service).
const rpcService = "kv.KVService"

// rpcSystem is the rpc.system attribute of every RPC span.
var rpcSystem = attribute.String("rpc.system", "kitex")

// startSpan starts the client span of a call of method when the client has a tracer, and
// returns ctx carrying the trace context (the new span's, else the caller's) and the trace id
// the call is sent with.
func (c *Client) startSpan(ctx context.Context, method string) (context.Context, trace.Span) {
	span := noSpan
	if c.tracer != nil {
		ctx, span = c.tracer.Start(ctx, rpcService+"/"+method, trace.WithSpanKind(trace.SpanKindClient))
		if span.IsRecording() {
			span.SetAttributes(rpcSystem, attribute.String("rpc.service", rpcService), attribute.String("rpc.method", method))
		}
	}
	ctx = tracing.Inject(ctx)
	if _, ok := traceid.From(ctx); !ok {
		id := tracing.TraceID(ctx)
		if id == "" {
			id = traceid.New()
		}
		ctx = traceid.With(ctx, id)
	}
	return ctx, span
}

// endSpan ends a call's span, marked failed with the call's code when *err is set.
func endSpan(span trace.Span, err *error) {
	if *err != nil && span.IsRecording() {
		tracing.Fail(span, CodeOf(*err).String(), (*err).Error())
	}
	span.End()
}

// startRoundTrip starts the client span of a coalesced round trip (PutAllMany, or PutAll for a
// lone call) in a trace of its own, linked to the span of every call it carries, and returns
// ctx carrying its trace context, its trace id the round trip's trace id. Without a tracer it returns ctx and a span that does nothing.
func (q *coalescer) startRoundTrip(ctx context.Context, batch []*queuedCall) (context.Context, trace.Span) {
	if q.tracer == nil {
		return ctx, noSpan
	}
	method := "PutAllMany"
	if len(batch) == 1 {
		method = "PutAll"
	}
	links := make([]trace.Link, 0, len(batch))
	for _, c := range batch {
		if sc := trace.SpanContextFromContext(c.ctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	ctx, span := q.tracer.Start(ctx, rpcService+"/"+method, trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(rpcSystem, attribute.String("rpc.service", rpcService), attribute.String("rpc.method", method),
			tracing.Calls.Int(len(batch))))
	return traceid.With(tracing.Inject(ctx), span.SpanContext().TraceID().String()), span
}

// endRoundTrip ends a round trip's span, marked failed when err is set.
func endRoundTrip(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
