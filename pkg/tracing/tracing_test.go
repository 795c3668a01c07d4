package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// recorder is a tracer provider sampling everything (or nothing) into an in-memory exporter.
func recorder(t *testing.T, sampled bool) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	sampler := sdktrace.NeverSample()
	if sampled {
		sampler = sdktrace.AlwaysSample()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func TestStartWithoutARecordingSpanDoesNothing(t *testing.T) {
	tp, exp := recorder(t, false)
	unsampled, parent := Tracer(tp).Start(context.Background(), "call")
	defer parent.End()
	for name, ctx := range map[string]context.Context{"no span": context.Background(), "unsampled span": unsampled} {
		got, span := Start(ctx, StageApply)
		if got != ctx || span.IsRecording() || span.SpanContext().IsValid() {
			t.Errorf("%s: Start made a span (%v) or a new context", name, span.SpanContext())
		}
		span.End()
		Fail(span, "INTERNAL", "ignored")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		_, span := Start(unsampled, StageApply)
		span.End()
	}); allocs != 0 {
		t.Errorf("Start under an unsampled span allocates %v times", allocs)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported, want none", n)
	}
}

func TestStartMakesAChildOfTheSpanInContext(t *testing.T) {
	tp, exp := recorder(t, true)
	ctx, parent := Tracer(tp).Start(context.Background(), "PutAll")
	_, child := Start(ctx, StageValidate)
	Fail(child, "TOO_LARGE", "a key is too long")
	child.End()
	parent.End()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	c := spans[0]
	if c.Name != StageValidate || c.Parent.SpanID() != parent.SpanContext().SpanID() || c.InstrumentationScope.Name != Instrumentation {
		t.Errorf("child %q (parent %s, scope %q), want validate under %s", c.Name, c.Parent.SpanID(), c.InstrumentationScope.Name,
			parent.SpanContext().SpanID())
	}
	if c.Status.Description != "a key is too long" || len(c.Attributes) != 1 || c.Attributes[0] != Code.String("TOO_LARGE") {
		t.Errorf("failed child: status %+v, attributes %v", c.Status, c.Attributes)
	}
}

func TestTraceContextThroughMetadata(t *testing.T) {
	tp, _ := recorder(t, true)
	if ctx := context.Background(); Inject(ctx) != ctx || FromMetadata(ctx) != ctx {
		t.Error("a context without a span changed")
	}
	ctx, span := Tracer(tp).Start(context.Background(), "client")
	defer span.End()
	got := trace.SpanContextFromContext(FromMetadata(Inject(ctx)))
	want := span.SpanContext()
	if !got.IsRemote() || got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() || !got.IsSampled() {
		t.Errorf("remote span context %v, want %v", got, want)
	}
	if TraceID(ctx) != want.TraceID().String() || TraceID(context.Background()) != "" {
		t.Errorf("TraceID = %q", TraceID(ctx))
	}
}

func TestTraceContextFromHeaders(t *testing.T) {
	tests := []struct {
		name, traceparent, wantTrace string
	}{
		{"valid", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"absent", "", ""},
		{"malformed", "00-xyz-00f067aa0ba902b7-01", ""},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{"traceparent": tt.traceparent, "tracestate": "vendor=1"}
			ctx := FromHeaders(context.Background(), func(name string) string { return headers[name] })
			if got := TraceID(ctx); got != tt.wantTrace {
				t.Errorf("trace id %q, want %q", got, tt.wantTrace)
			}
			if tt.wantTrace != "" && trace.SpanContextFromContext(ctx).TraceState().Get("vendor") != "1" {
				t.Error("tracestate was not kept")
			}
		})
	}
}

// BenchmarkStartUntraced is what a stage span costs a call that is not traced (tracing off,
// or the call not sampled): go test -bench StartUntraced ./pkg/tracing
func BenchmarkStartUntraced(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		_, span := Start(ctx, StageApply)
		span.End()
	}
}
