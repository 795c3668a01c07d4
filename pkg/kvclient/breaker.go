package kvclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudwego/kitex/pkg/circuitbreak"
	"github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/event"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/rpcinfo"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// Breaker defaults: a node trips when at least half of at least 10 calls sent to it in the
// last 10 seconds (the breaker's window) failed as an unhealthy node fails. Kitex's own
// default needs 200 calls in the window, which a client of a small cluster may take many
// seconds of failed dials to reach; 10 is enough to tell a dead node from one lost
// connection, and the 50% rate keeps a node that answers most calls in service.
const (
	defaultBreakerRate       = 0.5
	defaultBreakerMinSamples = 10
)

// WithCircuitBreaker sets when a server's breaker opens: once at least minSamples calls
// were sent to it in the last 10 seconds and at least errRate of them failed as an
// unhealthy node fails (see nodeFailure). An open breaker sends no call to that server: the
// call goes to another one at once, and after 5 seconds a few calls probe it again; two
// answered probes close the breaker. The breaker is on by default (errRate 0.5,
// minSamples 10) so that one dead node among several stops costing each call a failed dial;
// errRate 0 turns it off. A client of a single fixed server (New with one address) has none:
// it has nowhere else to send a call; a client whose resolver finds its servers has them.
func WithCircuitBreaker(errRate float64, minSamples int64) Option {
	return func(o *options) { o.breakerRate, o.breakerMinSamples = errRate, minSamples }
}

// checkBreaker reports a breaker setting that cannot work.
func (o *options) checkBreaker() error {
	if o.breakerRate < 0 || o.breakerRate > 1 {
		return fmt.Errorf("kvclient: breaker error rate must be in [0, 1], got %v", o.breakerRate)
	}
	if o.breakerRate > 0 && o.breakerMinSamples < 1 {
		return fmt.Errorf("kvclient: breaker minimum samples must be positive, got %d", o.breakerMinSamples)
	}
	return nil
}

// breakers is Kitex's circuit breaker per server, made to say why a server's breaker is
// open: a call it refuses fails with the last failure that server had, not only with
// "forbidden by circuitbreaker".
type breakers struct {
	suite *circuitbreak.CBSuite
	// bus carries the servers a resolver no longer lists to suite, which then drops their
	// breakers (see forget).
	bus event.Bus
	// last maps each server address to its last failure (an error); it holds at most one
	// entry per address the client was given or its resolver lists.
	last sync.Map
}

// newBreakers returns the breakers configured by o for a client of servers addresses, or
// nil when they are off or there is a single server: with no other server to send calls to,
// an open breaker would only delay noticing that the server is back (by up to 5s). Only
// Kitex's instance middleware is used: a breaker for the service as a whole would refuse
// calls that the other servers could serve. Close releases them.
func (o *options) newBreakers(servers int) *breakers {
	if o.breakerRate == 0 || servers < 2 {
		return nil
	}
	cb := circuitbreak.NewCBSuite(func(rpcinfo.RPCInfo) string { return serviceName },
		circuitbreak.WithInstanceGetErrorType(nodeFailure))
	cb.UpdateInstanceCBConfig(circuitbreak.CBConfig{Enable: true, ErrRate: o.breakerRate, MinSample: o.breakerMinSamples})
	bus := event.NewEventBus()
	cb.SetEventBusAndQueue(bus, nil)
	return &breakers{suite: cb, bus: bus}
}

// forget drops the breakers and last failures of the servers ch removes, once a resolver no
// longer lists them: should one come back, it starts with a closed breaker.
func (b *breakers) forget(ch discovery.Change) {
	for _, inst := range ch.Removed {
		if addr := inst.Address(); addr != nil {
			b.last.Delete(addr.String())
		}
	}
	b.bus.DispatchAndWait(&event.Event{Name: discovery.ChangeEventName, Time: time.Now(), Extra: &ch})
}

// middleware is the Kitex instance middleware (it runs once the load balancer has picked a
// server): the breaker of that server, which lets the attempt through or refuses it. Kitex
// picks another server after a refusal, as it does after a failed dial.
func (b *breakers) middleware(next endpoint.Endpoint) endpoint.Endpoint {
	guarded := b.suite.InstanceCBMW()(next)
	return func(ctx context.Context, req, resp any) error {
		err := guarded(ctx, req, resp)
		if err == nil {
			return nil
		}
		to := rpcinfo.GetRPCInfo(ctx).To().Address()
		if to == nil {
			return err
		}
		addr := to.String()
		if errors.Is(err, kerrors.ErrCircuitBreak) {
			if last, ok := b.last.Load(addr); ok {
				return fmt.Errorf("%w: %s last failed: %w", err, addr, last.(error))
			}
			return err
		}
		if t := nodeFailure(ctx, req, resp, err); t == circuitbreak.TypeFailure || t == circuitbreak.TypeTimeout {
			b.last.Store(addr, err)
		}
		return err
	}
}

// Close stops the breakers' share of the ticker goroutine they run on.
func (b *breakers) Close() error { return b.suite.Close() }

// nodeFailure classifies an attempt's outcome for the breaker of the node it went to. Only
// a failure that says the node is unhealthy counts: no connection, a timeout, or a
// connection lost mid-call. Any answer counts as a success, whatever its code (an error the
// server throws, NOT_FOUND or VERSION_MISMATCH or even UNAVAILABLE, arrives here as a
// successful call; a request it refused unread arrives as a refusal with a code of its
// own). A call its caller cancelled says nothing about the node.
func nodeFailure(ctx context.Context, _, _ any, err error) circuitbreak.ErrorType {
	switch {
	case err == nil:
		return circuitbreak.TypeSuccess
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return circuitbreak.TypeIgnorable
	case errors.Is(err, kerrors.ErrGetConnection):
		return circuitbreak.TypeFailure
	case kerrors.IsTimeoutError(err) || errors.Is(err, context.DeadlineExceeded):
		return circuitbreak.TypeTimeout
	case toError("", err).Code != kv.ErrorCode_UNAVAILABLE:
		return circuitbreak.TypeSuccess
	}
	return circuitbreak.TypeFailure
}
