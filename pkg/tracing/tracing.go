// Package tracing is putallkv's thin layer over the OpenTelemetry trace API: the stage spans of
// a call, the span attributes the project names, and the W3C trace context (traceparent,
// tracestate) carried in Kitex metadata and HTTP headers. It imports the API only, never the SDK
// or an exporter, so the service, the store and the Go SDK can use it without linking them: the
// process that exports spans (internal/server) builds the TracerProvider and hands it to the
// transports, which start each call's root span; everything below finds it through the span in
// the call's context.
//
// Tracing off costs next to nothing: with no span in a call's context, or one that is not
// recording (not sampled), Start returns at once with the context unchanged, allocating nothing.
package tracing

import (
	"context"

	"github.com/bytedance/gopkg/cloud/metainfo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Instrumentation is the instrumentation scope of every span putallkv makes.
const Instrumentation = "github.com/putallkv/putallkv"

// Span attributes putallkv sets beside OpenTelemetry's own (rpc.*, http.*).
const (
	// BatchSize is the number of entries of a multi-key write (a PutAll's span).
	BatchSize = attribute.Key("putallkv.batch.size")
	// Mode is a write's mode: ATOMIC or BEST_EFFORT.
	Mode = attribute.Key("putallkv.mode")
	// Calls is the number of calls of a PutAllMany.
	Calls = attribute.Key("putallkv.calls")
	// Code is the API error code a call or stage ended with (only on failure).
	Code = attribute.Key("putallkv.code")
	// Replayed marks an idempotency stage whose call got the first call's outcome back.
	Replayed = attribute.Key("putallkv.replayed")
	// RequestID is the call's trace id as the logs show it (request_id; package traceid), so
	// that a log line leads to its trace even when the caller chose the id.
	RequestID = attribute.Key("putallkv.request_id")
)

// Stage spans of a write, children of its PutAll span (see docs/operations.md, Tracing).
const (
	StageValidate    = "validate"
	StageIdempotency = "idempotency"
	StageAdmission   = "admission"
	StageApply       = "store.apply"
	StageDurability  = "wal.wait"
)

// none is the non-recording span Start returns when there is nothing to trace.
var none = trace.SpanFromContext(context.Background())

// Tracer returns the tracer of tp that putallkv's spans come from.
func Tracer(tp trace.TracerProvider) trace.Tracer { return tp.Tracer(Instrumentation) }

// Start starts a span named name as a child of the span in ctx, from that span's provider,
// when that span is recording; otherwise it returns ctx itself and a span whose methods do
// nothing, at no cost. End the span when the stage ends.
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, none
	}
	return Tracer(parent.TracerProvider()).Start(ctx, name)
}

// Fail marks span failed with message msg and, unless code is "", the API error code code; it
// does nothing to a span that is not recording.
func Fail(span trace.Span, code, msg string) {
	if !span.IsRecording() {
		return
	}
	if code != "" {
		span.SetAttributes(Code.String(code))
	}
	span.SetStatus(codes.Error, msg)
}

// The W3C trace context's fields, as HTTP headers and as Kitex metadata keys (transient
// metainfo values, sent in TTHeader one hop, the names kitex-contrib/obs-opentelemetry uses).
const (
	keyTraceparent = "traceparent"
	keyTracestate  = "tracestate"
)

// propagator reads and writes the W3C trace context.
var propagator propagation.TraceContext

// Inject returns ctx carrying the span context of ctx (the caller's span) as Kitex metadata,
// which the Go SDK sends in TTHeader; ctx itself when it has no valid span context.
func Inject(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	var c pair
	propagator.Inject(ctx, &c)
	ctx = metainfo.WithValue(ctx, keyTraceparent, c.traceparent)
	if c.tracestate != "" {
		ctx = metainfo.WithValue(ctx, keyTracestate, c.tracestate)
	}
	return ctx
}

// FromMetadata returns ctx with the remote span context its caller sent in Kitex metadata (see
// Inject), for the server span to join; ctx itself when none, or a malformed one, was sent.
func FromMetadata(ctx context.Context) context.Context {
	tp, ok := metainfo.GetValue(ctx, keyTraceparent)
	if !ok {
		return ctx
	}
	ts, _ := metainfo.GetValue(ctx, keyTracestate)
	return propagator.Extract(ctx, &pair{traceparent: tp, tracestate: ts})
}

// FromHeaders returns ctx with the remote span context of an HTTP request's traceparent and
// tracestate headers, which get reads (a missing header reads as ""); ctx itself when none, or
// a malformed one, was sent.
func FromHeaders(ctx context.Context, get func(name string) string) context.Context {
	tp := get(keyTraceparent)
	if tp == "" {
		return ctx
	}
	return propagator.Extract(ctx, &pair{traceparent: tp, tracestate: get(keyTracestate)})
}

// TraceID returns the trace id of ctx's span context in hex (the W3C form), or "" when ctx has
// none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// pair is the propagator's carrier of the two W3C fields.
type pair struct{ traceparent, tracestate string }

func (p *pair) Get(key string) string {
	switch key {
	case keyTraceparent:
		return p.traceparent
	case keyTracestate:
		return p.tracestate
	}
	return ""
}

func (p *pair) Set(key, value string) {
	switch key {
	case keyTraceparent:
		p.traceparent = value
	case keyTracestate:
		p.tracestate = value
	}
}

func (p *pair) Keys() []string { return []string{keyTraceparent, keyTracestate} }
