package gateway

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/traceid"
)

// Limits bound the gateway's connections and how long each step of a request may take. A
// connection that overstays a step is closed; a request whose handling overstays its deadline
// is answered 503 UNAVAILABLE.
type Limits struct {
	// MaxConnections caps the connections open at once; one more is answered 503 and closed.
	MaxConnections int
	// IdleTimeout closes a keep-alive connection that waits longer than this for its next
	// request.
	IdleTimeout time.Duration
	// HeaderTimeout closes a connection whose request headers are not all in this long after
	// the request began (for a connection's first request: after it opened).
	HeaderTimeout time.Duration
	// BodyTimeout closes a connection whose request body takes longer than this to arrive, or
	// whose response takes longer than this to be taken.
	BodyTimeout time.Duration
	// RequestTimeout is the deadline of a request's handling once its headers are in: at the
	// deadline the caller is answered 503 UNAVAILABLE and the connection is free again, even
	// if the service never answers. A Request-Timeout header may shorten it.
	RequestTimeout time.Duration
}

// DefaultLimits are the limits a zero field of Options.Limits takes.
var DefaultLimits = Limits{
	MaxConnections: 1024,
	IdleTimeout:    60 * time.Second,
	HeaderTimeout:  10 * time.Second,
	BodyTimeout:    60 * time.Second,
	RequestTimeout: 10 * time.Second,
}

// withDefaults is l with every zero (or negative) field set from DefaultLimits.
func (l Limits) withDefaults() Limits {
	pick := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultLimits.MaxConnections
	}
	l.IdleTimeout = pick(l.IdleTimeout, DefaultLimits.IdleTimeout)
	l.HeaderTimeout = pick(l.HeaderTimeout, DefaultLimits.HeaderTimeout)
	l.BodyTimeout = pick(l.BodyTimeout, DefaultLimits.BodyTimeout)
	l.RequestTimeout = pick(l.RequestTimeout, DefaultLimits.RequestTimeout)
	return l
}

// headerRequestTimeout lets a caller shorten its request's deadline: a positive duration
// with a unit, as Go writes them ("2s", "1500ms"). A value over gateway.request_timeout
// leaves the configured deadline.
const headerRequestTimeout = "Request-Timeout"

// withDeadline returns ctx bounded by the request's deadline: Limits.RequestTimeout, or the
// caller's Request-Timeout if that is shorter. When it passes, context.Cause(ctx) is the
// UNAVAILABLE error the caller gets.
func (g *Gateway) withDeadline(ctx context.Context, c *app.RequestContext) (context.Context, context.CancelFunc, error) {
	d := g.limits.RequestTimeout
	if v := strings.TrimSpace(string(c.Request.Header.Peek(headerRequestTimeout))); v != "" {
		asked, err := time.ParseDuration(v)
		if err != nil || asked <= 0 {
			return ctx, func() {}, invalid(`%s must be a positive duration with a unit, such as "2s" or "500ms", got %q`,
				headerRequestTimeout, v)
		}
		d = min(d, asked)
	}
	cause := &apiError{code: kv.ErrorCode_UNAVAILABLE.String(), detail: fmt.Sprintf(
		"no answer within the request's deadline of %s; a write may still be applied: "+
			"retry it with the same Idempotency-Key to learn its outcome", d)}
	ctx, cancel := context.WithTimeoutCause(ctx, d, cause)
	return ctx, cancel, nil
}

// calls bounds the service calls running at once, those whose callers were already answered at
// their deadline included: a service that never returns holds a goroutine (and the request's
// bytes) for each call, and a caller that retries at every deadline would add one each time.
type calls chan struct{}

// overloaded answers a call while calls is full.
var overloaded = &apiError{code: kv.ErrorCode_UNAVAILABLE.String(),
	detail: "too many calls are still running past their deadlines; the service is not answering; retry later"}

// outcome is what a service call returned.
type outcome[Resp any] struct {
	resp Resp
	err  error
}

// start reserves a place for a service call, or refuses the call while none is free.
func (c calls) start() error {
	select {
	case c <- struct{}{}:
		return nil
	default:
		return overloaded
	}
}

// bounded calls call(ctx, req) within a place of g.calls; see await.
func bounded[Req, Resp any](ctx context.Context, g *Gateway, call func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	if err := g.calls.start(); err != nil {
		var zero Resp
		return zero, err
	}
	return await(ctx, g, func() (Resp, error) { return call(ctx, req) })
}

// await runs call, which holds a place of g.calls (see start), and waits for it until ctx
// ends, so a service that does not return (a stuck disk, a lost upstream) cannot hold the
// request, its handler or its connection past the request's deadline: the caller then gets
// context.Cause(ctx). The call runs on a goroutine of its own (one of g.workers), which goes
// on after the deadline until the service returns, and then frees the place; it must not touch the
// request's *app.RequestContext, which Hertz reuses once the handler returns. A panic in it
// is answered as INTERNAL, as guard answers one in the handler.
func await[Resp any](ctx context.Context, g *Gateway, call func() (Resp, error)) (Resp, error) {
	done := make(chan outcome[Resp], 1)
	g.workers.run(func() {
		defer func() { <-g.calls }()
		defer func() {
			if p := recover(); p != nil {
				id, _ := traceid.From(ctx)
				g.log.ErrorContext(ctx, "gateway: panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "request_id", id)
				done <- outcome[Resp]{err: internalError}
			}
		}()
		resp, err := call()
		done <- outcome[Resp]{resp: resp, err: err}
	})
	select {
	case o := <-done:
		return o.resp, o.err
	case <-ctx.Done():
		select {
		case o := <-done: // the service answered at the deadline too: its answer says more
			return o.resp, o.err
		default:
			var zero Resp
			return zero, context.Cause(ctx)
		}
	}
}
