package server

import (
	"context"

	"github.com/cloudwego/hertz/pkg/app"
	hertztracer "github.com/cloudwego/hertz/pkg/common/tracer"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/stats"
	hertzprom "github.com/hertz-contrib/monitor-prometheus"
	kitexprom "github.com/kitex-contrib/monitor-prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// The standard CloudWeGo series, which stock Kitex and Hertz dashboards read, come from
// kitex-contrib/monitor-prometheus (kitex_server_throughput, kitex_server_latency_us) and
// hertz-contrib/monitor-prometheus (hertz_server_throughput, hertz_server_latency_us), on the
// program's own registry (served at admin /metrics, not on a listener of their own). Their
// labels are bounded here, since each label value a client can choose would be a series kept
// until exit: see kitexTracer and hertzTracer.

// latencyBuckets (in microseconds, the unit of the standard series) reach from 50µs to ~13s;
// the contrib default starts at 5ms, above most calls of this service.
var latencyBuckets = prometheus.ExponentialBuckets(50, 4, 10)

// kitexTracer returns the Kitex server tracer of the standard series. The contrib tracer labels
// each call with its caller's service name and retry count, which a client sends in its
// TTHeader as it likes; this one shows the contrib tracer each call with those left empty
// (caller "unknown", retry "0"), so that the series stay one per method and status.
func kitexTracer(reg *prometheus.Registry) stats.Tracer {
	return boundedKitexTracer{kitexprom.NewServerTracer("", "",
		kitexprom.WithRegistry(reg), kitexprom.WithDisableServer(true), kitexprom.WithHistogramBuckets(latencyBuckets))}
}

type boundedKitexTracer struct{ stats.Tracer }

// Finish implements stats.Tracer: the wrapped tracer gets a copy of the call's RPCInfo with
// an anonymous caller and a callee of only its service and method.
func (t boundedKitexTracer) Finish(ctx context.Context) {
	ri := rpcinfo.GetRPCInfo(ctx)
	if ri == nil {
		return
	}
	to := rpcinfo.NewEndpointInfo(ri.To().ServiceName(), ri.To().Method(), nil, nil)
	t.Tracer.Finish(rpcinfo.NewCtxWithRPCInfo(ctx,
		rpcinfo.NewRPCInfo(rpcinfo.EmptyEndpointInfo(), to, ri.Invocation(), ri.Config(), ri.Stats())))
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
