package kvclient

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/remote"
	remoteconnpool "github.com/cloudwego/kitex/pkg/remote/connpool"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
)

// Kitex bounds a call that has a timeout (an RPC timeout, or a context that can end) by
// running the whole call on a pooled goroutine and waiting for it or for the deadline: two
// goroutine hand-offs per call (see docs/sdk.md for what they cost). The Client ends its
// calls itself instead, the way Kitex's timeout does:
//
//   - Kitex is handed a callContext, which keeps the caller's values but never ends, so it
//     runs the call on the caller's goroutine;
//   - when the caller's context ends (its deadline, the per-attempt RPC timeout, or a
//     cancel), the call's connection is shut down, which fails the read or write in flight,
//     and the connection is discarded rather than reused (see cancellingPool);
//   - the time left is still sent in TTHeader (see sendDeadline), so the server bounds its
//     own waiting (write admission) by the caller's deadline, and the connection's read
//     timeout is set from it.

// callContext is the context Kitex sees for one attempt: the caller's values, no deadline,
// no end. caller is the attempt's real context.
type callContext struct {
	context.Context
	caller context.Context
}

type callContextKey struct{}

// kitexContext returns the context to hand Kitex for an attempt whose real context is ctx.
func kitexContext(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx // nothing can end it: Kitex runs it inline as it is
	}
	return &callContext{Context: ctx, caller: ctx}
}

func (*callContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*callContext) Done() <-chan struct{}       { return nil }
func (*callContext) Err() error                  { return nil }

func (c *callContext) Value(key any) any {
	if key == (callContextKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// callerOf returns the real context of the attempt ctx belongs to, or nil.
func callerOf(ctx context.Context) context.Context {
	if c, ok := ctx.Value(callContextKey{}).(*callContext); ok {
		return c.caller
	}
	return nil
}

// sendDeadline is a Kitex middleware (it runs after Kitex's timeout middleware has let the
// call through inline) that puts the time left before the caller's deadline into the call's
// RPC timeout: TTHeader carries it to the server, and the connection's read timeout follows it.
func sendDeadline(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		if caller := callerOf(ctx); caller != nil {
			if d, ok := caller.Deadline(); ok {
				cfg := rpcinfo.AsMutableRPCConfig(rpcinfo.GetRPCInfo(ctx).Config())
				// TTHeader carries whole milliseconds, truncated: round up, so that the server
				// does not give up before the caller does. Locked, the timeout is sent; a
				// timeout the caller locked is kept.
				left := max(time.Until(d), 0).Truncate(time.Millisecond) + time.Millisecond
				if cfg.SetRPCTimeout(left) == nil {
					cfg.LockConfig(rpcinfo.BitRPCTimeout)
				}
			}
		}
		return next(ctx, req, resp)
	}
}

// cancellingPool is Kitex's pool of long connections, whose connections are shut down when
// the call holding them ends early (see callContext).
//
// Shut down, not closed: closing a netpoll connection frees its buffers and poller state
// while the call's goroutine may still be reading them (a response that arrives just as the
// deadline passes), which corrupts netpoll's operator cache and can hang later dials. A
// shutdown(2) of the socket instead makes the poller see the connection end, as if the peer
// had closed it: the call's read or write fails on the call's own goroutine, and Kitex then
// discards the connection, which closes it there.
type cancellingPool struct {
	*remoteconnpool.LongPool
}

// attachedConn is a pooled connection lent to a call whose context can end.
type attachedConn struct {
	net.Conn
	// stopShutdown stops the shutdown of the connection when the call's context ends; false
	// means the context ended first.
	stopShutdown func() bool

	mu       sync.Mutex
	returned bool // the call handed the connection back: its descriptor may be closed
}

// RawConn returns the connection Kitex reads and writes (see remote.RawConn).
func (c *attachedConn) RawConn() net.Conn {
	if raw, ok := c.Conn.(remote.RawConn); ok {
		return raw.RawConn()
	}
	return c.Conn
}

// shutdown ends the connection's traffic in both directions, unless the call has already
// handed it back. A connection without a descriptor (not netpoll) is closed instead.
func (c *attachedConn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.returned {
		return
	}
	if fd, ok := c.RawConn().(interface{ Fd() int }); ok {
		_ = syscall.Shutdown(fd.Fd(), syscall.SHUT_RDWR)
		return
	}
	_ = c.Conn.Close()
}

// release detaches the connection from its call's context and reports whether it is intact
// (the context did not end while the call held it).
func (c *attachedConn) release() bool {
	if c.stopShutdown() {
		return true
	}
	// The shutdown has started or is about to: once returned is set, it leaves the
	// descriptor alone, so the pool may close it.
	c.mu.Lock()
	c.returned = true
	c.mu.Unlock()
	return false
}

// Get implements remote.ConnPool: the connection is shut down if the call's context ends
// while the call holds it.
func (p cancellingPool) Get(ctx context.Context, network, address string, opt remote.ConnOption) (net.Conn, error) {
	conn, err := p.LongPool.Get(ctx, network, address, opt)
	if err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	if caller == nil {
		return conn, nil
	}
	c := &attachedConn{Conn: conn}
	c.stopShutdown = context.AfterFunc(caller, c.shutdown)
	return c, nil
}

// Put implements remote.ConnPool: a connection its call's end may have shut down is
// discarded.
func (p cancellingPool) Put(conn net.Conn) error {
	if c, ok := conn.(*attachedConn); ok {
		if !c.release() {
			return p.LongPool.Discard(c.Conn)
		}
		conn = c.Conn
	}
	return p.LongPool.Put(conn)
}

// Discard implements remote.ConnPool.
func (p cancellingPool) Discard(conn net.Conn) error {
	if c, ok := conn.(*attachedConn); ok {
		c.release()
		conn = c.Conn
	}
	return p.LongPool.Discard(conn)
}
