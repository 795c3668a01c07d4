package handler

import (
	"context"

	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/traceid"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// rpcService is the service name of RPC spans: the IDL's namespace and service, as
// OpenTelemetry's RPC conventions name it.
const rpcService = "kv.KVService"

// rpcSystem is the rpc.system attribute of every RPC span.
var rpcSystem = attribute.String("rpc.system", "kitex")

// Tracing returns a Kitex server middleware that makes each call a server span of tp, named
// kv.KVService/<method>, in the trace its caller sent in TTHeader (the W3C traceparent, see
// package tracing), else in a trace of its own; sampling follows tp's sampler (a caller's
// sampled flag is kept). The span carries the call's trace id as the logs show it
// (putallkv.request_id) and, when the call fails, its API code. Below it, the service's spans
// (a PutAll's stages) hang off the span in the call's context. Without tracing, the server
// has no such middleware at all.
func Tracing(tp trace.TracerProvider) endpoint.Middleware {
	tracer := tracing.Tracer(tp)
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req, resp any) error {
			method := rpcinfo.GetRPCInfo(ctx).To().Method()
			ctx, span := tracer.Start(tracing.FromMetadata(ctx), rpcService+"/"+method, trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			if !span.IsRecording() {
				return next(ctx, req, resp)
			}
			id, _ := traceid.From(ctx)
			span.SetAttributes(rpcSystem, attribute.String("rpc.service", rpcService), attribute.String("rpc.method", method),
				tracing.RequestID.String(id))
			err := next(ctx, req, resp)
			if r, ok := resp.(interface{ GetErr() *kv.KVError }); ok && r.GetErr() != nil {
				tracing.Fail(span, r.GetErr().Code.String(), r.GetErr().Message)
			} else if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}
