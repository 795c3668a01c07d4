package gateway

import (
	"context"
	"sync"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/common/config"
	"github.com/cloudwego/hertz/pkg/network"
)

// conns tracks the connections Hertz is serving, so a shutdown can close the idle ones.
//
// Hertz runs one loop per connection that, between keep-alive requests, waits for the next
// one; netpoll counts a connection in that wait as busy, so Hertz's graceful shutdown would
// wait for every keep-alive client to hang up (or for the shutdown to time out). Like
// net/http's Shutdown, the gateway instead closes connections that are between requests;
// those in the middle of one finish it and are closed by Hertz after it.
type conns struct {
	mu       sync.Mutex
	idle     map[network.Conn]bool // every connection being served -> whether it is between requests
	draining bool                  // set by closeIdle: a connection going idle now is closed
}

// transport is Hertz's transport (see newTransporter) with its connections tracked in c.
func (c *conns) transport(opts *config.Options) network.Transporter {
	return trackedTransport{Transporter: newTransporter(opts), conns: c}
}

// trackedTransport wraps a transport's handler so each connection is tracked for as long as
// Hertz serves it.
type trackedTransport struct {
	network.Transporter
	conns *conns
}

func (t trackedTransport) ListenAndServe(onData network.OnData) error {
	return t.Transporter.ListenAndServe(func(ctx context.Context, conn any) error {
		if c, ok := conn.(network.Conn); ok {
			t.conns.track(c)
			defer t.conns.untrack(c)
		}
		return onData(ctx, conn)
	})
}

// Start implements Hertz's tracer.Tracer: Hertz calls it when a request's first bytes arrive.
func (c *conns) Start(ctx context.Context, rc *app.RequestContext) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.idle[rc.GetConn()]; ok {
		c.idle[rc.GetConn()] = false
	}
	return ctx
}

// Finish implements Hertz's tracer.Tracer: Hertz calls it when a response has been written and
// the connection waits for the next request (or is about to close).
func (c *conns) Finish(_ context.Context, rc *app.RequestContext) {
	conn := rc.GetConn()
	c.mu.Lock()
	_, tracked := c.idle[conn]
	closeNow := tracked && c.draining
	if tracked && !c.draining {
		c.idle[conn] = true
	}
	c.mu.Unlock()
	if closeNow {
		_ = conn.Close()
	}
}

// track starts tracking conn, busy: Hertz serves a connection when a request arrives on it.
func (c *conns) track(conn network.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle[conn] = false
}

func (c *conns) untrack(conn network.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.idle, conn)
}

// closeIdle closes the connections between requests, and from now on each connection as its
// request finishes. Called once Hertz is shutting down (it would close a connection after its
// current request anyway, but not one already waiting for the next).
func (c *conns) closeIdle() {
	var idle []network.Conn
	c.mu.Lock()
	c.draining = true
	for conn, ok := range c.idle {
		if ok {
			idle = append(idle, conn)
		}
	}
	c.mu.Unlock()
	for _, conn := range idle {
		_ = conn.Close() // its serving loop sees the close and ends, which untracks it
	}
}
