// Package kvclient is the Go SDK of putallkv: a Kitex client over pooled long connections
// that tags every call with a trace id, retries only where a retry cannot write
// twice, and turns every failure into an *Error with a stable code. Its servers are a fixed
// list (New), or whatever a resolver finds (NewWithResolver): every address of a DNS name
// (NewDNSResolver), or the servers registered in etcd (package etcdresolver).
//
// Its methods take and return the generated kitex_gen/kv types, so nothing of the API is
// hidden, and *Client satisfies the generated kv.KVService interface, so it can stand in for
// the server's handler (as the HTTP gateway does when it runs as a separate tier).
package kvclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"iter"
	"net"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/client/callopt"
	"github.com/cloudwego/kitex/pkg/connpool"
	"github.com/cloudwego/kitex/pkg/discovery"
	remoteconnpool "github.com/cloudwego/kitex/pkg/remote/connpool"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/auth"
)

// serviceName is the destination service name the server registers under.
const serviceName = "putallkv"

// Client calls putallkv servers. It is safe for concurrent use; create one per process and
// Close it when done.
//
// A failed call is attempted again (up to WithRetries times, with exponential backoff and
// jitter, while ctx lasts) only where that cannot write twice: a read whenever the answer is
// UNAVAILABLE; a write only when it carries a request_id (its idempotency key) and the call
// got no answer at all. A write the server answered, even with UNAVAILABLE, is not resent.
// Retries share a budget (WithRetryBudget), so that in an outage they add at most a tenth to
// the calls made. (Beneath this, Kitex itself picks a server again, up to 6 times, when it
// cannot get a connection or the server's circuit breaker is open, before anything is sent;
// see WithCircuitBreaker.) All attempts of a call carry the same trace id: the one in ctx
// (see package traceid), else a fresh one.
type Client struct {
	raw        kvservice.Client
	pool       io.Closer
	retries    int
	budget     *retryBudget
	rpcTimeout time.Duration
	// breaker is the circuit breaker of each server; nil when WithCircuitBreaker turned it off.
	breaker *breakers
	// resolver finds the servers of a client made by NewWithResolver; nil for a fixed list.
	resolver *clientResolver
	metrics  *Metrics // nil records nothing
	// coalescer gathers concurrent PutAll calls into PutAllMany round trips; nil sends each
	// by itself (see WithCoalescing).
	coalescer *coalescer
	tracer    trace.Tracer // nil: no spans (see WithTracerProvider)
	// servers is how many servers the client was made with (New's addresses; manyServers for
	// a resolver): the defaults of round trips in flight are per server.
	servers int
	tls     bool // WithTLS: no Load streams (see Loader)
}

// The gateway is handed a *Client where it expects the service itself.
var _ kv.KVService = (*Client)(nil)

// Option configures a Client.
type Option func(*options)

type options struct {
	rpcTimeout        time.Duration
	connectTimeout    time.Duration
	pool              connpool.IdleConfig
	retries           int
	budgetRatio       float64
	budgetReserve     int
	breakerRate       float64
	breakerMinSamples int64
	metrics           *Metrics
	coalesce          int
	coalesceSet       bool // WithCoalescing was given; else DefaultCoalescing per server
	token             string
	tls               *tls.Config
	refresh           time.Duration
	resolver          discovery.Resolver // set by NewWithResolver only
	kitex             []client.Option
	tracer            trace.Tracer
}

// WithRPCTimeout bounds each attempt of a call, from sending the request to reading the
// response (default 3s; 0 means no bound beyond the caller's context).
func WithRPCTimeout(d time.Duration) Option {
	return func(o *options) { o.rpcTimeout = d }
}

// WithConnectTimeout bounds dialling a new connection (default 500ms), so a dead address
// fails fast instead of using up the call's whole timeout.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) { o.connectTimeout = d }
}

// WithPool sizes the pool of long connections kept open between calls: at most
// maxIdlePerAddress idle connections to each server and maxIdleGlobal in all, each closed
// after idleTimeout unused (defaults 10, 100 and 1m, Kitex's own; Kitex raises an idle
// timeout under 2s to 2s).
func WithPool(maxIdlePerAddress, maxIdleGlobal int, idleTimeout time.Duration) Option {
	return func(o *options) {
		o.pool = connpool.IdleConfig{
			MaxIdlePerAddress: maxIdlePerAddress,
			MaxIdleGlobal:     maxIdleGlobal,
			MaxIdleTimeout:    idleTimeout,
		}
	}
}

// WithRetries sets how many extra attempts a call may make after a failure that is safe to
// retry (default 2; 0 disables retries). See Client for which failures those are.
func WithRetries(n int) Option {
	return func(o *options) { o.retries = n }
}

// WithCoalescing makes PutAll gather the calls of concurrent callers into PutAllMany round
// trips, at most roundTrips of them in flight at once (each on a connection of its own): a
// call that finds a round trip free goes by itself at once, one that finds them all in use
// goes with the calls queued beside it in the next one that frees. Under load from many
// goroutines this shares the cost of a round trip among many calls (see docs/sdk.md for
// figures); a lone caller pays nothing. Each call keeps its own semantics, retries and
// deadline; a coalesced call reaches the server under its round trip's trace id, not its
// own. A call whose context carries a token of its own (auth.ContextWithToken) is sent by
// itself. The default is DefaultCoalescing per server; 0 sends every PutAll by itself.
func WithCoalescing(roundTrips int) Option {
	return func(o *options) { o.coalesce, o.coalesceSet = roundTrips, true }
}

// DefaultCoalescing is the coalesced round trips in flight a Client allows per server unless
// WithCoalescing says otherwise (per server it was made with: New's addresses, two for a
// resolver's). Coalescing costs a lone caller nothing (its call goes by itself) and, with 50
// callers on two cores, gave 3–4× the keys/s of a round trip per call. Two in flight beat one
// in every round on an otherwise idle machine (1.15–1.4× at 50 callers, 1.5× at 500; the server
// applies one round trip while the next travels), although one did better on cores saturated
// by other work (docs/sdk.md has both). A process that needs more concurrent round trips to one
// server (a server of many cores, a long network path) sets WithCoalescing.
const DefaultCoalescing = 2

// WithKitexOptions passes options straight to the Kitex client, after the ones this package
// sets, for what it does not cover (tracing suites, middlewares); a resolver goes to
// NewWithResolver.
func WithKitexOptions(opts ...client.Option) Option {
	return func(o *options) { o.kitex = append(o.kitex, opts...) }
}

// New returns a Client that spreads calls over the servers at addrs (each "host:port").
// It does not connect: connections are made on first use. NewWithResolver finds the servers
// instead, by DNS or in etcd.
func New(addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("kvclient: no server address")
	}
	for _, a := range addrs {
		// Kitex would take anything that is not host:port for a unix socket path.
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("kvclient: server address %q: %w", a, err)
		}
	}
	return newClient(newOptions(opts), len(addrs), client.WithHostPorts(addrs...))
}

// newOptions applies opts over the defaults.
func newOptions(opts []Option) options {
	o := options{
		rpcTimeout:        3 * time.Second,
		connectTimeout:    500 * time.Millisecond,
		pool:              connpool.IdleConfig{MaxIdlePerAddress: 10, MaxIdleGlobal: 100, MaxIdleTimeout: time.Minute},
		retries:           2,
		budgetRatio:       defaultBudgetRatio,
		budgetReserve:     defaultBudgetReserve,
		breakerRate:       defaultBreakerRate,
		breakerMinSamples: defaultBreakerMinSamples,
		refresh:           defaultRefreshInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// newClient builds the Client o configures over servers (how many the client knows of at
// start; manyServers when a resolver finds them) that the Kitex options in target name.
func newClient(o options, servers int, target ...client.Option) (*Client, error) {
	if o.retries < 0 {
		return nil, fmt.Errorf("kvclient: retries must not be negative, got %d", o.retries)
	}
	budget, err := newRetryBudget(o.budgetRatio, o.budgetReserve)
	if err != nil {
		return nil, err
	}
	if err := o.checkBreaker(); err != nil {
		return nil, err
	}
	if o.coalesce < 0 {
		return nil, fmt.Errorf("kvclient: coalescing round trips must not be negative, got %d", o.coalesce)
	}
	if o.refresh <= 0 {
		return nil, fmt.Errorf("kvclient: refresh interval must be positive, got %s", o.refresh)
	}
	breaker := o.newBreakers(servers)
	var resolver *clientResolver
	if o.resolver != nil {
		var ropts []client.Option
		resolver, ropts = o.resolverOptions(breaker)
		target = append(target, ropts...)
	}

	// The pool is made here rather than by client.WithLongConnection because the generated
	// kvservice.Client has no Close: owning the pool is how Close releases the connections
	// and the pool's idle-sweep goroutine instead of leaving them to a finalizer.
	pool := cancellingPool{remoteconnpool.NewLongPool(serviceName, *connpool.CheckPoolConfig(o.pool))}
	kopts := append(append(target,
		client.WithConnPool(pool),
		// Metadata (the trace id) travels only in TTHeader.
		client.WithTransportProtocol(transport.TTHeader),
		client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
		// No Kitex RPC timeout: call bounds each attempt itself (see deadline.go).
		client.WithMiddleware(sendDeadline),
		client.WithConnectTimeout(o.connectTimeout),
		client.WithDialer(o.dialer()),
	), append(o.secureOptions(), streamOptions()...)...)
	if breaker != nil {
		kopts = append(kopts, client.WithInstanceMW(breaker.middleware))
	}
	raw, err := kvservice.NewClient(serviceName, append(kopts, o.kitex...)...)
	if err != nil {
		_ = pool.Close()
		if breaker != nil {
			_ = breaker.Close()
		}
		return nil, fmt.Errorf("kvclient: %w", err)
	}
	c := &Client{raw: raw, pool: pool, retries: o.retries, budget: budget, rpcTimeout: o.rpcTimeout, breaker: breaker,
		resolver: resolver, metrics: o.metrics, tracer: o.tracer, servers: max(servers, 1), tls: o.tls != nil}
	if !o.coalesceSet {
		o.coalesce = DefaultCoalescing * c.servers
	}
	if o.coalesce > 0 {
		c.coalescer = &coalescer{many: raw.PutAllMany, single: raw.PutAll, timeout: o.rpcTimeout, roundTrips: o.coalesce, metrics: o.metrics,
			tracer: o.tracer}
	}
	return c, nil
}

// Close closes the pooled connections, stops the circuit breaker and stops asking the
// resolver (it does not close the resolver). Calls made after Close fail.
func (c *Client) Close() error {
	if c.resolver != nil {
		c.resolver.close()
	}
	if c.breaker != nil {
		_ = c.breaker.Close() // it always returns nil
	}
	return c.pool.Close()
}

// Raw returns the generated Kitex client underneath, for per-call options (callopt). Calls
// made through it bypass this package's trace ids, retries, error mapping and RPC timeout
// (bound them with a context deadline or callopt.WithRPCTimeout).
func (c *Client) Raw() kvservice.Client { return c.raw }

// Put writes one key. After a failure in transport it is retried only if req carries a
// request_id, which makes the server replay rather than reapply it.
func (c *Client) Put(ctx context.Context, req *kv.PutRequest) (*kv.PutResponse, error) {
	return call(ctx, c, "Put", c.raw.Put, req, (*kv.PutRequest).GetRequestId)
}

// Get reads one key. Reads are retried while the service is unavailable.
func (c *Client) Get(ctx context.Context, req *kv.GetRequest) (*kv.GetResponse, error) {
	return call(ctx, c, "Get", c.raw.Get, req, nil)
}

// Delete deletes one key; retried as Put is.
func (c *Client) Delete(ctx context.Context, req *kv.DeleteRequest) (*kv.DeleteResponse, error) {
	return call(ctx, c, "Delete", c.raw.Delete, req, (*kv.DeleteRequest).GetRequestId)
}

// PutAll writes many keys in one call, ATOMIC or BEST_EFFORT; retried as Put is. A failed
// ATOMIC write reports every failing key in (*Error).Failed.
func (c *Client) PutAll(ctx context.Context, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	if _, own := auth.TokenFromContext(ctx); c.coalescer != nil && !own {
		return call(ctx, c, "PutAll", c.coalescer.putAll, req, (*kv.PutAllRequest).GetRequestId)
	}
	return call(ctx, c, "PutAll", c.raw.PutAll, req, (*kv.PutAllRequest).GetRequestId)
}

// PutAllMany sends several independent PutAll calls in one round trip; a call's own failure
// is in its outcome (as the *kv.KVError the server sent), and kvclient errors are for the
// request as a whole. It is retried as Put is when every call carries a request_id.
// (WithCoalescing builds these from concurrent PutAll calls.)
func (c *Client) PutAllMany(ctx context.Context, req *kv.PutAllManyRequest) (*kv.PutAllManyResponse, error) {
	return call(ctx, c, "PutAllMany", c.raw.PutAllMany, req, everyIdempotencyKey)
}

// everyIdempotencyKey is a PutAllMany's idempotency key for the retry policy: non-empty only when
// every call carries a request_id, so that resending it cannot apply a call twice.
func everyIdempotencyKey(req *kv.PutAllManyRequest) string {
	id := ""
	for _, call := range req.GetCalls() {
		if id = call.GetRequestId(); id == "" {
			return ""
		}
	}
	return id
}

// GetAll reads many keys as of one revision; retried as Get is.
func (c *Client) GetAll(ctx context.Context, req *kv.GetAllRequest) (*kv.GetAllResponse, error) {
	return call(ctx, c, "GetAll", c.raw.GetAll, req, nil)
}

// Scan reads one page of the keys that start with req.Prefix (see kv.ScanRequest); retried as
// Get is. ScanAll follows the pages.
func (c *Client) Scan(ctx context.Context, req *kv.ScanRequest) (*kv.ScanResponse, error) {
	return call(ctx, c, "Scan", c.raw.Scan, req, nil)
}

// ScanAll yields every item of a scan through api (a Client, say) from req (its Cursor, when
// set, resumes one), page after page, until the scan is over, the loop breaks or a call fails:
// the error is then yielded with a nil item, last. Each page is one Scan call under ctx; req is
// not modified.
func ScanAll(ctx context.Context, api kv.KVService, req *kv.ScanRequest) iter.Seq2[*kv.Item, error] {
	return func(yield func(*kv.Item, error) bool) {
		page := *req
		for {
			resp, err := api.Scan(ctx, &page)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, it := range resp.Items {
				if !yield(it, nil) {
					return
				}
			}
			if resp.NextCursor == "" {
				return
			}
			page.Cursor = resp.NextCursor
		}
	}
}

// DeleteAll deletes many keys in one call; retried as Put is.
func (c *Client) DeleteAll(ctx context.Context, req *kv.DeleteAllRequest) (*kv.DeleteAllResponse, error) {
	return call(ctx, c, "DeleteAll", c.raw.DeleteAll, req, (*kv.DeleteAllRequest).GetRequestId)
}

// call sends req with send, tagging ctx with a trace id if it has none (the same id on every
// attempt, so the server's logs tie them together) and with the call's trace context (see
// WithTracerProvider), retrying as the request's policy allows, and returning any failure as
// an *Error. idempotencyKey returns a write's idempotency key (its request_id); it is nil for
// reads.
func call[Req comparable, Resp any](ctx context.Context, c *Client, method string,
	send func(context.Context, Req, ...callopt.Option) (Resp, error), req Req, idempotencyKey func(Req) string,
) (_ Resp, err error) {
	var zero Resp
	var none Req
	if req == none {
		return zero, &Error{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: method + ": nil request"}
	}
	p := retryUnavailable
	if idempotencyKey != nil {
		p = writePolicy(idempotencyKey(req))
	}
	ctx, span := c.startSpan(ctx, method)
	defer endSpan(span, &err)
	start := time.Now()
	c.budget.called()
	for n := 0; ; n++ {
		resp, err := attempt(ctx, c.rpcTimeout, send, req)
		if err == nil {
			c.metrics.called(method, start, nil)
			return resp, nil
		}
		e := toError(method, err)
		if !c.mayRetry(method, n, p, e) || !Sleep(ctx, backoff(n, e.RetryAfter)) {
			c.metrics.called(method, start, e)
			return zero, e
		}
	}
}

// mayRetry reports whether a call of method whose attempt n (from 0) failed with e may be
// attempted again: the call's policy p and WithRetries allow it, and the retry budget has a
// retry to spend.
func (c *Client) mayRetry(method string, n int, p policy, e *Error) bool {
	if n >= c.retries || !p.allows(e) {
		return false
	}
	ok := c.budget.retry()
	c.metrics.retried(method, ok)
	return ok
}

// attempt sends req once, within timeout (0: only ctx bounds it). When ctx or the timeout
// ends the attempt, its error says so (errors.Is context.DeadlineExceeded or Canceled).
func attempt[Req, Resp any](ctx context.Context, timeout time.Duration,
	send func(context.Context, Req, ...callopt.Option) (Resp, error), req Req,
) (Resp, error) {
	if d, ok := ctx.Deadline(); timeout > 0 && (!ok || time.Until(d) > timeout) {
		var cancel context.CancelFunc // a timer of its own only when it ends the attempt first
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp, err := send(kitexContext(ctx), req)
	if err != nil {
		if cause := contextEnd(ctx); cause != nil {
			err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	return resp, err
}

// contextEnd returns why ctx has ended, or nil. A deadline that has passed counts even before
// ctx's timer has marked ctx done: the call's own read timeout, set from the same deadline,
// can fire first.
func contextEnd(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
