// Package gateway is putallkv's HTTP/JSON gateway: a Hertz server that speaks the whole KV API
// in the HTTP conventions non-Go callers already know (ETags and preconditions, Idempotency-Key,
// RFC 9457 problem+json errors, X-Request-ID) and calls a kv.KVService for everything else.
//
// It depends only on the generated kv.KVService interface, so the same gateway runs in the
// server's process over the handler itself, or as a separate tier over a pooled Kitex client
// (*kvclient.Client). The routes, the JSON shapes and the problem types are documented on
// Gateway and in docs/http.md.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/common/config"
	"github.com/cloudwego/hertz/pkg/common/tracer"
	"github.com/cloudwego/hertz/pkg/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/auth"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// DefaultMaxBodyBytes is the request body bound used when Options.MaxBodyBytes is not positive.
const DefaultMaxBodyBytes = 4 << 20

// readyTimeout bounds one call of Options.Ready, so a hung upstream makes /readyz answer 503
// rather than hang the prober.
const readyTimeout = 2 * time.Second

// maxHeaderBytes bounds a request's line and headers; larger ones are refused with 431. Hertz
// reads them whole before anything else (1 MiB by default): the API needs far less.
const maxHeaderBytes = 64 << 10

// maxExitWait is Hertz's own bound on a graceful shutdown; Shutdown's ctx usually ends it sooner.
const maxExitWait = time.Minute

// Options configure a Gateway.
type Options struct {
	// MaxBodyBytes bounds a request body. A larger body is refused with 413 before it is read
	// whole: at once when Content-Length declares it, else as soon as the stream passes the
	// bound. Not positive means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// Registerer receives the gateway's metrics (requests by route and status, latency by
	// route) when Start runs; nil registers them nowhere.
	Registerer prometheus.Registerer
	// Logger gets the access-log lines (method, route, status, bytes, latency, trace id) and
	// any handler panic; nil means slog.Default().
	Logger *slog.Logger
	// AccessLog says which requests get an access-log line; empty means AccessLogErrors.
	AccessLog AccessLog
	// Ready reports whether the gateway can serve (store ready, upstream reachable); /readyz
	// answers 503 while it returns an error. nil means always ready.
	Ready func(ctx context.Context) error
	// Auth checks every request's bearer token against the route's role (see authorize); nil
	// lets every request through. Either way the token goes on to the service in the call's
	// context, which a gateway tier's SDK sends to the RPC servers.
	Auth *auth.Authenticator
	// TLS, when set, makes the gateway serve HTTPS only (over Hertz's standard transport).
	TLS *tls.Config
	// Limits bound connections and each step of a request; zero fields take DefaultLimits.
	Limits Limits
	// AllowedHosts are the names (or addresses) a request's Host may give, without ports;
	// others are refused with 421. Empty means the loopback names and the host Start listens
	// on; "*" allows any (behind a proxy that checks Host itself).
	AllowedHosts []string
	// AllowedOrigins are the origins ("https://app.example") whose browser pages may call the
	// gateway, and get CORS headers; "*" allows any. A request from any other page (it carries
	// Origin) is refused with 403. Empty allows none.
	AllowedOrigins []string
	// Tracer, when set, also sees every request, after the gateway's own instruments (the
	// standard hertz_server_* series, say).
	Tracer tracer.Tracer
	// TracerProvider, when set, makes every request an OpenTelemetry span of its own, joined
	// to the trace of the request's traceparent header (see startSpan); nil traces nothing.
	TracerProvider trace.TracerProvider
}

// Gateway serves the KV API over HTTP. Create it with New, Start it once, and Shutdown to stop
// it.
//
// Routes (keys are the percent-encoded rest of the path, '/' included):
//
//	PUT    /v1/kv/{key}      body = raw value; If-Match / If-None-Match: *, ?ttl_ms=; 201 or 200
//	GET    /v1/kv/{key}      raw value, ETag; If-None-Match -> 304
//	DELETE /v1/kv/{key}      If-Match; 204
//	POST   /v1/kv:putAll     {"mode","entries":[{"key","value"|"value_base64","expected_version","ttl_ms"}]}
//	POST   /v1/kv:getAll     {"keys":[...]}
//	POST   /v1/kv:deleteAll  {"mode","entries":[{"key","expected_version"}]}
//	GET    /healthz          the process is up
//	GET    /readyz           Options.Ready succeeds
type Gateway struct {
	svc      kv.KVService
	maxBody  int
	reg      prometheus.Registerer
	log      *slog.Logger
	access   AccessLog
	ready    func(ctx context.Context) error
	auth     *auth.Authenticator
	tls      *tls.Config
	inFlight inFlight
	conns    conns
	limits   Limits
	calls    calls // service calls running, those past their callers' deadlines included
	workers  *workers
	hosts    hosts // set by Start, from AllowedHosts and the bound address
	names    []string
	origins  origins
	metrics  *metrics
	ops      map[string]app.HandlerFunc // the batch calls under POST /v1/:op, by op; set by routes
	tracer   tracer.Tracer
	spans    trace.Tracer // nil: no spans

	ln       net.Listener
	h        *server.Hertz
	accepted chan struct{} // closed when the server first waits for a connection
	accept   sync.Once
	done     chan error // receives the result of Hertz's Run

	stop    sync.Once
	stopErr error // the result of the one shutdown
}

// New returns a Gateway that serves svc. It does not listen until Start.
func New(svc kv.KVService, opts Options) *Gateway {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	limits := opts.Limits.withDefaults()
	g := &Gateway{
		svc:      svc,
		maxBody:  opts.MaxBodyBytes,
		reg:      opts.Registerer,
		log:      opts.Logger,
		access:   opts.AccessLog,
		ready:    opts.Ready,
		auth:     opts.Auth,
		tls:      opts.TLS,
		metrics:  newMetrics(),
		inFlight: inFlight{keys: make(map[string]struct{})},
		limits:   limits,
		// Each connection runs one call at a time; as many again may still run past their
		// callers' deadlines.
		calls:    make(calls, 2*limits.MaxConnections),
		workers:  newWorkers(),
		names:    opts.AllowedHosts,
		origins:  opts.AllowedOrigins,
		tracer:   opts.Tracer,
		accepted: make(chan struct{}),
		done:     make(chan error, 1),
	}
	if opts.TracerProvider != nil {
		g.spans = tracing.Tracer(opts.TracerProvider)
	}
	g.conns = conns{limits: limits, metrics: g.metrics, open: make(map[*conn]struct{}),
		accepted: func() { g.accept.Do(func() { close(g.accepted) }) }, refusal: g.hertzError}
	return g
}

// Start listens on addr ("host:port"; port 0 picks a free port, see Addr) and serves in the
// background until Shutdown, and registers the gateway's metrics. It listens before returning,
// so an address in use is an error here, and it returns only once the server waits for
// connections, so a Shutdown right after it cannot race Hertz's start-up.
func (g *Gateway) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.ln = ln
	g.hosts = newHosts(g.names, ln.Addr())
	g.h = server.New(g.serverOptions(&listener{Listener: ln, set: &g.conns})...)
	g.h.OnShutdown = append(g.h.OnShutdown, func(context.Context) { g.conns.closeIdle() })
	// A client that asks first (Expect: 100-continue, as curl does for large bodies) is not
	// invited to send a body it declares too large; readBody then answers 413.
	g.h.ContinueHandler = func(h *protocol.RequestHeader) bool { return h.ContentLength() <= g.maxBody }
	g.routes()
	go func() { g.done <- g.h.Run() }()
	if err := g.awaitServing(); err != nil {
		_ = ln.Close()
		g.h = nil // nothing to shut down
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.metrics.register(g.reg); err != nil {
		return errors.Join(fmt.Errorf("gateway: metrics: %w", err), g.Shutdown(context.Background()))
	}
	return nil
}

// serverOptions configure Hertz for an API whose keys live in the path and whose bodies are
// bounded by the gateway itself.
func (g *Gateway) serverOptions(ln net.Listener) []config.Option {
	opts := []config.Option{
		// Go's net transport, over the gateway's listener: it caps the connections, and every
		// connection's time limits are its own (see conns). Hertz keeps connections alive
		// only with an idle timeout of its own: twice conns', a backstop that never acts
		// first. Its read timeout would only repeat conns' limits.
		server.WithListener(ln),
		server.WithTransport(g.conns.transport),
		server.WithIdleTimeout(2 * g.limits.IdleTimeout),
		server.WithReadTimeout(0),
		server.WithTracer(&g.conns),
		// Route on the path exactly as sent and decode keys ourselves: Hertz's default routes on
		// a cleaned path ("a//b" and "a/../b" collapse) and unescapes with QueryUnescape ('+'
		// becomes a space).
		server.WithUseRawPath(true),
		server.WithRemoveExtraSlash(false),
		server.WithUnescapePathValues(false),
		server.WithRedirectTrailingSlash(false),
		server.WithRedirectFixedPath(false),
		server.WithHandleMethodNotAllowed(true),
		// Hand handlers a body stream so they answer 413 in problem+json; Hertz's own limit
		// answers in text/plain. MaxRequestBodySize then only sizes what Hertz prefetches.
		server.WithStreamBody(true),
		server.WithMaxRequestBodySize(g.maxBody),
		server.WithMaxHeaderBytes(maxHeaderBytes),
		// Never parse multipart bodies up front: that would read them whole.
		server.WithDisablePreParseMultipartForm(true),
		server.WithDisableDefaultContentType(true),
		server.WithDisablePrintRoute(true),
		server.WithExitWaitTime(maxExitWait),
		server.WithOnAccept(g.conns.onAccept),
		g.tlsOption(),
	}
	if g.tracer != nil {
		opts = append(opts, server.WithTracer(g.tracer))
	}
	return opts
}

// awaitServing waits until Hertz asks the listener for its first connection (or Run fails).
// Until Hertz runs, its Shutdown is a no-op, and a server shut down in that window would
// serve on forever.
func (g *Gateway) awaitServing() error {
	select {
	case <-g.accepted:
		return nil
	case err := <-g.done:
		if err == nil {
			err = errors.New("the server stopped during start-up")
		}
		return err
	}
}

// Addr is the address the gateway listens on; nil before Start.
func (g *Gateway) Addr() net.Addr {
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// Shutdown stops accepting connections, closes keep-alive connections between requests, lets
// in-flight requests finish until ctx is done (and at most a minute), and waits for the server
// to stop. It is a no-op before a successful Start; a second call returns the first's result.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.h == nil {
		return nil
	}
	g.stop.Do(func() { g.stopErr = g.shutdown(ctx) })
	return g.stopErr
}

func (g *Gateway) shutdown(ctx context.Context) error {
	defer g.workers.stop()
	err := g.h.Shutdown(ctx)
	if err == nil && ctx.Err() != nil {
		// Hertz reports a graceful wait that ran out of time as success.
		err = fmt.Errorf("gateway: shutdown: %w", ctx.Err())
	}
	select {
	case runErr := <-g.done:
		return errors.Join(err, runErr)
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("gateway: shutdown: %w", ctx.Err()))
	}
}
