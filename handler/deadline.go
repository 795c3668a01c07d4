package handler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/kitex/pkg/remote/codec/thrift"
	"github.com/cloudwego/kitex/pkg/remote/trans/netpoll"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/biz/service"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/rpcguard"
)

// Transport is how the KVService endpoint reads requests.
type Transport struct {
	// MaxRequestBytes is the largest encoded request read (server.max_request_bytes).
	MaxRequestBytes int
	// DrainTimeout bounds the reading of a refused oversized request (server.drain_timeout).
	DrainTimeout time.Duration
	// Logger receives refused requests, rate-limited.
	Logger *slog.Logger
	// Refusals counts refused requests (nil: not counted): putallkv_rpc_requests_refused_total.
	Refusals *rpcguard.Metrics
	// TracerProvider, when set, makes every call a span of its own (see Tracing); nil traces
	// nothing, at no cost.
	TracerProvider trace.TracerProvider
	// Streams is the transport of the Load streams, whose gauges the server exports; nil
	// makes one with StreamOptions(MaxRequestBytes).
	Streams *rpcguard.Streams
}

// StreamOptions are the bounds of the streams of a server that takes requests of up to
// maxRequestBytes: a stream message as large as a request (and its TTHeader metadata), four of
// them held per connection, and held for at most the Load streams' idle bound.
func StreamOptions(maxRequestBytes int) rpcguard.StreamOptions {
	const metadata = 64 << 10
	return rpcguard.StreamOptions{MaxFrameBytes: maxRequestBytes + metadata, InflightBytes: 4 * (maxRequestBytes + metadata),
		Wait: service.DefaultLoadIdle}
}

// NewStreams returns the stream transport of the KVService bounded by o.
func NewStreams(o rpcguard.StreamOptions) *rpcguard.Streams {
	s, err := rpcguard.NewStreams(o, kvservice.NewServiceInfo())
	if err != nil {
		panic(fmt.Sprintf("handler: %v", err)) // bounds from StreamOptions, or a generator change; tested
	}
	return s
}

// handlerOptions are the options of rpcguard's transport handlers on any transport.
func (t Transport) handlerOptions() rpcguard.HandlerOptions {
	return rpcguard.HandlerOptions{DrainTimeout: t.DrainTimeout, Logger: t.Logger}
}

// ServerOptions are the Kitex server options of the KVService endpoint: TTHeader metadata
// (the trace id, the W3C trace context, the caller's deadline), a span per call when
// t.TracerProvider is set (Tracing), the caller's deadline on the call's context
// (CallerDeadline), and requests read through package rpcguard: framed Thrift, refused when
// oversized or malformed, with an answer the SDK maps to TOO_LARGE or INVALID_ARGUMENT, and
// TTHeader streams (Load) read through rpcguard's stream gate (frame size, bytes held, every
// message checked before it is decoded); no HTTP/2 on the port, whose decoder would bypass
// it. The
// server binary and putallbench's empty handler both serve with them, so that the two differ
// only in the handler.
func ServerOptions(t Transport) []server.Option {
	codec, err := rpcguard.New(t.MaxRequestBytes, kvservice.NewServiceInfo())
	if err != nil {
		panic(fmt.Sprintf("handler: the generated service has no schema: %v", err)) // a generator change; tested
	}
	streams := t.Streams
	if streams == nil {
		streams = NewStreams(StreamOptions(t.MaxRequestBytes))
	}
	opts := []server.Option{server.WithMetaHandler(transmeta.ServerTTHeaderHandler), server.WithPayloadCodec(requestCodec)}
	if t.TracerProvider != nil {
		opts = append(opts, server.WithMiddleware(Tracing(t.TracerProvider)))
	}
	return append(opts,
		server.WithMiddleware(CallerDeadline),
		server.WithCodec(codec.CountRefusals(t.Refusals)),
		server.WithTransHandlerFactory(streams.Handlers(rpcguard.Handlers(netpoll.NewSvrTransHandlerFactory(), t.handlerOptions()))),
	)
}

// requestCodec decodes requests with frugal (reflection over the generated structs' frugal
// tags) and encodes responses with the generated FastWrite. The generated FastRead allocates
// every key and every value of a request on its own (52 allocations for a PutAll of 16 keys);
// frugal places them in shared 2 KiB blocks, a few allocations a request, and a string kept
// past the call pins at most its block (what the service keeps, it clones). It is wrapped, so
// that Kitex takes it as this server's codec: Kitex registers a bare thrift codec process-wide,
// for every client and server in the process.
var requestCodec remote.PayloadCodec = serverPayloadCodec{thrift.NewThriftCodecWithConfig(thrift.FastWrite | thrift.FrugalRead)}

// serverPayloadCodec is a payload codec Kitex does not recognise as its own thrift codec.
type serverPayloadCodec struct{ remote.PayloadCodec }

// CallerDeadline is a Kitex server middleware that bounds a call's context by the time its
// caller has left (the RPC timeout TTHeader carries), so that waits in the call (write
// admission) end when the caller stops waiting, and releases that deadline's timer as soon
// as the call returns.
//
// It stands in for Kitex's server.WithEnableContextTimeout, which cancels the context only
// when the call fails: a successful call leaves its timer armed until the timeout passes,
// and a goroutine is started to cancel the context then. At 20 000 calls/s from callers
// with 5 s deadlines that is 100 000 armed timers and 20 000 goroutines a second, about
// 100 MB of heap that the server did not need.
func CallerDeadline(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		if t := rpcinfo.GetRPCInfo(ctx).Config().RPCTimeout(); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t)
			defer cancel()
		}
		return next(ctx, req, resp)
	}
}
