package server

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/pkg/buildinfo"
)

// Option changes how Start builds a server, beyond what the configuration says: hooks for
// tests.
type Option func(*startOptions)

type startOptions struct {
	spanExporter sdktrace.SpanExporter
}

// WithSpanExporter makes a server with tracing.enabled export its spans to e, each as it ends,
// instead of over OTLP: the end-to-end tests read the spans of a call from an in-memory
// exporter (tracetest).
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return func(o *startOptions) { o.spanExporter = e }
}

// startTracing builds the tracer provider of the tracing section, when it is enabled: spans
// sampled at tracing.sample_ratio (a call that arrives in a sampled or unsampled trace follows
// its caller), batched and posted over OTLP/HTTP to tracing.endpoint. OTLP/HTTP rather than
// gRPC: every collector and tracing backend takes it, and it links no gRPC stack into the
// server. The batcher holds at most 2048 spans; past that, spans are dropped, never waited
// for, and an export failure is logged, never retried into memory.
func (s *Server) startTracing(o startOptions) error {
	t := s.cfg.Tracing
	if !t.Enabled {
		return nil
	}
	proc := sdktrace.NewSimpleSpanProcessor(o.spanExporter)
	if o.spanExporter == nil {
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(t.Endpoint))
		if err != nil {
			return fmt.Errorf("tracing.endpoint: %w", err)
		}
		proc = sdktrace.NewBatchSpanProcessor(exp)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		s.log.Warn("tracing: spans not exported", "err", err)
	}))
	s.tracerProvider = sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", t.ServiceName),
			attribute.String("service.version", buildinfo.Get().Version))),
		sdktrace.WithSpanProcessor(proc))
	s.log.Info("tracing on", "endpoint", t.Endpoint, "sample_ratio", t.SampleRatio, "service_name", t.ServiceName)
	return nil
}

// tracer is the provider the transports make spans with, or nil when tracing is off (a nil
// *sdktrace.TracerProvider must not reach them as a non-nil interface).
func (s *Server) tracer() trace.TracerProvider {
	if s.tracerProvider == nil {
		return nil
	}
	return s.tracerProvider
}

// stopTracing exports the spans still batched, for up to a second, and stops the provider. A
// failure is logged: spans are not worth failing a shutdown for.
func (s *Server) stopTracing() {
	if s.tracerProvider == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.tracerProvider.Shutdown(ctx); err != nil {
		s.log.Warn("tracing: spans lost at shutdown", "err", err)
	}
}
