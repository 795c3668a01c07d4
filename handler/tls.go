package handler

import (
	"crypto/tls"
	"net"
	"sync"

	"github.com/cloudwego/kitex/pkg/remote/trans/gonet"
	"github.com/cloudwego/kitex/server"

	"github.com/putallkv/putallkv/pkg/rpcguard"
)

// TLSListener serves the KVService over TLS. Kitex's default transport, netpoll, reads
// sockets itself and cannot run TLS; its Go-net transport reads a net.Conn, which may be a
// *tls.Conn, so the server runs on that transport over a crypto/tls listener (see
// ServerOptions). It costs throughput; docs/performance.md, Tokens and TLS, has the figures.
//
// It also lets a graceful shutdown finish: the Go-net transport waits for every connection
// to close, and a client's pooled connection idles between calls for as long as the client
// keeps it. Drain closes the connections that are between calls, and each one as its call
// is answered, as net/http's Shutdown does.
type TLSListener struct {
	net.Listener // the crypto/tls listener

	mu       sync.Mutex
	conns    map[*drainConn]struct{}
	draining bool
}

// NewTLSListener serves TLS with cfg on the connections ln accepts.
func NewTLSListener(ln net.Listener, cfg *tls.Config) *TLSListener {
	return &TLSListener{Listener: tls.NewListener(ln, cfg), conns: make(map[*drainConn]struct{})}
}

// ServerOptions are the Kitex server options that serve on l: its listener and the Go-net
// transport, whose handlers refuse malformed and oversized requests as the netpoll ones do
// (see ServerOptions; an oversized request's body is not drained on this transport: the
// connection is closed after the refusal).
func (l *TLSListener) ServerOptions(t Transport) []server.Option {
	return []server.Option{
		server.WithListener(l),
		server.WithTransServerFactory(gonet.NewTransServerFactory()),
		server.WithTransHandlerFactory(rpcguard.Handlers(gonet.NewSvrTransHandlerFactory(), t.handlerOptions())),
	}
}

// Accept implements net.Listener: the connection is tracked until it closes.
func (l *TLSListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &drainConn{Conn: conn, l: l, answered: true}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

// Drain closes the connections waiting for a call, and from now on each connection once its
// call is answered.
func (l *TLSListener) Drain() {
	l.mu.Lock()
	l.draining = true
	var idle []*drainConn
	for c := range l.conns {
		idle = append(idle, c)
	}
	l.mu.Unlock()
	for _, c := range idle {
		c.closeIfWaiting()
	}
}

func (l *TLSListener) isDraining() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.draining
}

func (l *TLSListener) forget(c *drainConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// drainConn is a served connection that knows whether it is between calls. The Go-net
// transport serves one call at a time on a connection: it reads a request, writes the
// response, then reads again for the next request. So a read that starts after a write (or
// on a fresh connection) waits for a new call, and a read that returns bytes starts one.
type drainConn struct {
	net.Conn
	l *TLSListener

	mu       sync.Mutex
	answered bool // no request bytes have arrived since the last response: between calls
	waiting  bool // blocked in a read between calls
}

// Read implements net.Conn; a read between calls during a drain closes the connection.
func (c *drainConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	between := c.answered
	c.waiting = between
	c.mu.Unlock()
	if between && c.l.isDraining() {
		_ = c.Close()
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.waiting = false
	if n > 0 {
		c.answered = false
	}
	c.mu.Unlock()
	return n, err
}

// Write implements net.Conn: a write answers the call.
func (c *drainConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.answered = true
	c.mu.Unlock()
	return n, err
}

// Close implements net.Conn.
func (c *drainConn) Close() error {
	c.l.forget(c)
	return c.Conn.Close()
}

// closeIfWaiting closes the connection if it waits for a call.
func (c *drainConn) closeIfWaiting() {
	c.mu.Lock()
	waiting := c.waiting
	c.mu.Unlock()
	if waiting {
		_ = c.Close()
	}
}
