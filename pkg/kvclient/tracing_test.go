package kvclient

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestCoalescedRoundTripIsASpanLinkedToItsCalls checks that each call is a client span and a
// shared round trip a span of its own, linked to the span of every call it carries.
func TestCoalescedRoundTripIsASpanLinkedToItsCalls(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c, s := newCoalescingClient(t, WithTracerProvider(tp))
	release := holdRoundTrip(t, c, s)
	keys := keysOf("k", 3)
	outs := queueCalls(t, c, keys, background)
	if o := release(); o.err != nil {
		t.Fatal(o.err)
	}
	for i := range keys {
		if o := <-outs[i]; o.err != nil {
			t.Fatal(o.err)
		}
	}
	calls := map[trace.SpanID]bool{}
	var roundTrips []tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		switch sp.Name {
		case "kv.KVService/PutAll":
			if sp.SpanKind != trace.SpanKindClient {
				t.Errorf("call span %+v", sp)
			}
			calls[sp.SpanContext.SpanID()] = true
		case "kv.KVService/PutAllMany":
			roundTrips = append(roundTrips, sp)
		}
	}
	if len(calls) != 1+len(keys) || len(roundTrips) != 1 {
		t.Fatalf("%d call spans and %d round-trip spans; want %d and 1", len(calls), len(roundTrips), 1+len(keys))
	}
	rt := roundTrips[0]
	if len(rt.Links) != len(keys) {
		t.Fatalf("the round trip links %d spans, want %d", len(rt.Links), len(keys))
	}
	for _, l := range rt.Links {
		if !calls[l.SpanContext.SpanID()] {
			t.Errorf("the round trip links %s, which is no call's span", l.SpanContext.SpanID())
		}
		if l.SpanContext.TraceID() == rt.SpanContext.TraceID() {
			t.Error("the round trip is in a call's trace, not one of its own")
		}
	}
}
