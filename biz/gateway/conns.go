package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/common/config"
	"github.com/cloudwego/hertz/pkg/network"
	"github.com/cloudwego/hertz/pkg/network/standard"
)

// conns is the gateway's connection layer: it caps the connections open at once, closes a
// connection that takes too long at any step (waiting for a request, sending its headers or
// body, taking its response), and closes idle connections when the gateway shuts down.
//
// It sits under Hertz as a listener (listener.Accept hands Hertz only the connections within
// the cap, each wrapped in a *conn), as Hertz's transport (Go's net transport, handing Hertz
// each connection as a served), and beside Hertz as a tracer (Start and Finish mark where each
// request begins and ends). The handlers mark the steps in between (observe: busy and
// responding; readBody: body). Every step's time limit is one timer per connection that
// closes the connection when it fires: a deadline, not an inactivity timeout, so a client that
// sends one byte every few seconds (slowloris) is closed like one that sends nothing.
//
// Hertz's own netpoll transport accepts connections inside its event loop, where no listener
// of ours sees them; Go's net transport accepts through the listener, and is the one Hertz
// serves TLS with.
type conns struct {
	limits  Limits
	metrics *metrics
	// accepted is called when Hertz first asks the listener for a connection: it serves.
	accepted func()
	// refusal is the response that replaces Hertz's own when Hertz refuses a request with
	// status before any handler runs (see served).
	refusal func(status int) []byte

	mu       sync.Mutex
	open     map[*conn]struct{}
	draining bool // set by closeIdle: a connection going idle now is closed
}

// step is where a connection is in its request cycle; each step has its own time limit.
type step uint8

const (
	stepIdle       step = iota // waiting for the next request: Limits.IdleTimeout
	stepHeader                 // reading a request's headers: Limits.HeaderTimeout
	stepBusy                   // a handler runs: bounded by the request's deadline instead
	stepBody                   // a handler reads the request body: Limits.BodyTimeout
	stepResponding             // the response is written (and an unread body skipped): Limits.BodyTimeout
)

// stepNames label the steps in metrics.
var stepNames = [...]string{"idle", "header", "busy", "body", "responding"}

// limit is the time a connection may spend in st; 0 means no limit of the connection's own.
func (s *conns) limit(st step) time.Duration {
	switch st {
	case stepIdle:
		return s.limits.IdleTimeout
	case stepHeader:
		return s.limits.HeaderTimeout
	case stepBody, stepResponding:
		return s.limits.BodyTimeout
	}
	return 0
}

// conn is one connection the gateway serves: the accepted net.Conn with its step and the timer
// that closes it when the step takes too long.
type conn struct {
	net.Conn
	set *conns

	mu       sync.Mutex
	step     step
	deadline time.Time // when the current step's time is up; zero when it has no limit
	timer    *time.Timer
	closed   bool

	// read is set (by served) once a request's first bytes have arrived, and cleared when a
	// new request begins; a connection in stepHeader that has read nothing is as idle as one
	// in stepIdle (Hertz starts a connection's first request before it reads a byte, and a
	// TLS handshake is not a request).
	read atomic.Bool
	// handled is set once a handler runs for the current request (see handling); until then
	// a response is Hertz's own refusal.
	handled atomic.Bool
	once    sync.Once
}

// enter moves c to st and arms its timer for st's limit.
func (c *conn) enter(st step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.step = st
	d := c.set.limit(st)
	if d <= 0 {
		c.deadline = time.Time{}
		c.timer.Stop()
		return
	}
	c.deadline = time.Now().Add(d)
	c.timer.Reset(d)
}

// expire is the timer's function: it closes c if its current step's time is up. A timer that
// fires late for a step c has left finds a later deadline, or none, and does nothing.
func (c *conn) expire() {
	c.mu.Lock()
	st, due := c.step, !c.deadline.IsZero() && !time.Now().Before(c.deadline)
	c.mu.Unlock()
	if due {
		c.set.metrics.timedOut.WithLabelValues(stepNames[st]).Inc()
		_ = c.Close()
	}
}

// Write sends p, giving up after Limits.BodyTimeout: a client that does not read its responses
// cannot hold the handler's goroutine.
func (c *conn) Write(p []byte) (int, error) {
	if d := c.set.limits.BodyTimeout; d > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	return c.Conn.Write(p)
}

// Close closes the connection once, and stops counting it.
func (c *conn) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.timer.Stop()
		c.mu.Unlock()
		c.set.forget(c)
		err = c.Conn.Close()
	})
	return err
}

// waiting reports whether c is between requests: no request of it is being read or served.
func (c *conn) waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.step == stepIdle || c.step == stepHeader && !c.read.Load()
}

// admit wraps nc as a served connection, or returns nil if the gateway already serves as many
// as it may, or is shutting down.
func (s *conns) admit(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining || len(s.open) >= s.limits.MaxConnections {
		return nil
	}
	d := s.limit(stepIdle)
	c := &conn{Conn: nc, set: s, step: stepIdle, deadline: time.Now().Add(d)}
	c.mu.Lock() // the timer may fire before c.timer is set
	c.timer = time.AfterFunc(d, c.expire)
	c.mu.Unlock()
	s.open[c] = struct{}{}
	s.metrics.open.Inc()
	return c
}

func (s *conns) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.open[c]; ok {
		delete(s.open, c)
		s.metrics.open.Dec()
	}
}

// connKey is the context key of the *conn a request arrived on.
type connKey struct{}

// onAccept is Hertz's OnAccept hook: it puts the connection in the context Hertz hands every
// request on it.
func (s *conns) onAccept(nc net.Conn) context.Context {
	c, _ := nc.(*conn)
	return context.WithValue(context.Background(), connKey{}, c)
}

// connOf is the connection of the request whose context is ctx; nil outside a served request.
func connOf(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// handling marks that a handler runs for the request of ctx: its response is the gateway's.
func handling(ctx context.Context) {
	if c := connOf(ctx); c != nil {
		c.handled.Store(true)
	}
}

// enterStep moves the connection of ctx, if any, to st.
func enterStep(ctx context.Context, st step) {
	if c := connOf(ctx); c != nil {
		c.enter(st)
	}
}

// Start implements Hertz's tracer.Tracer: Hertz calls it when it begins to read a request (for
// the first request of a connection, at once; later ones, when their first bytes arrive).
func (s *conns) Start(ctx context.Context, _ *app.RequestContext) context.Context {
	if c := connOf(ctx); c != nil {
		c.read.Store(false)
		c.handled.Store(false)
		c.enter(stepHeader)
	}
	return ctx
}

// Finish implements Hertz's tracer.Tracer: Hertz calls it when a response has been written and
// the connection waits for the next request (or is about to close). While the gateway shuts
// down, the connection is closed instead.
func (s *conns) Finish(ctx context.Context, _ *app.RequestContext) {
	c := connOf(ctx)
	if c == nil {
		return
	}
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		_ = c.Close()
		return
	}
	c.enter(stepIdle)
}

// closeIdle closes the connections between requests, and from now on each connection as its
// request finishes, and refuses new ones. Called once Hertz is shutting down: it would close a
// connection after its current request anyway, but not one waiting for the next.
func (s *conns) closeIdle() {
	s.mu.Lock()
	s.draining = true
	all := make([]*conn, 0, len(s.open))
	for c := range s.open {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		if c.waiting() {
			_ = c.Close() // its serving loop sees the close and ends
		}
	}
}

// transport is Hertz's Go-net transport, handing Hertz each connection as a served.
func (s *conns) transport(opts *config.Options) network.Transporter {
	return servedTransport{Transporter: standard.NewTransporter(opts), set: s}
}

type servedTransport struct {
	network.Transporter
	set *conns
}

func (t servedTransport) ListenAndServe(onData network.OnData) error {
	return t.Transporter.ListenAndServe(func(ctx context.Context, nc any) error {
		if hc, ok := nc.(network.Conn); ok {
			if c := connOf(ctx); c != nil {
				nc = &served{Conn: hc, c: c, refusal: t.set.refusal}
			}
		}
		return onData(ctx, nc)
	})
}

// served is a connection as Hertz reads and writes it (above TLS, when there is TLS). When
// Hertz refuses a request before any handler runs, it writes its own text/plain answer:
// served writes the gateway's problem+json in its place.
type served struct {
	network.Conn
	c       *conn
	refusal func(status int) []byte
	swallow bool // the rest of Hertz's refusal is dropped; only Hertz's goroutine writes
}

// Peek is how Hertz waits for a request's first bytes: once they are there, the connection is
// no longer between requests.
func (s *served) Peek(n int) ([]byte, error) {
	b, err := s.Conn.Peek(n)
	if len(b) > 0 && !s.c.read.Load() {
		s.c.read.Store(true)
	}
	return b, err
}

// WriteBinary writes b, or the gateway's refusal in place of Hertz's.
func (s *served) WriteBinary(b []byte) (int, error) {
	if s.swallow {
		return len(b), nil
	}
	if !s.c.handled.Load() {
		if status, ok := responseStatus(b); ok && status >= 400 {
			s.swallow = true
			if _, err := s.Conn.WriteBinary(s.refusal(status)); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return s.Conn.WriteBinary(b)
}

// HandleSpecificError lets the transport's connection quieten the errors it knows.
func (s *served) HandleSpecificError(err error, rip string) bool {
	h, ok := s.Conn.(network.HandleSpecificError)
	return ok && h.HandleSpecificError(err, rip)
}

// responseStatus is the status of the response whose head b starts with.
func responseStatus(b []byte) (int, bool) {
	const prefix = len("HTTP/1.1 ")
	if len(b) < prefix+3 || !bytes.HasPrefix(b, []byte("HTTP/1.")) {
		return 0, false
	}
	n, err := strconv.Atoi(string(b[prefix : prefix+3]))
	return n, err == nil
}

// listener hands Hertz the connections within the gateway's cap. A connection over the cap is
// answered 503 (problem+json, Connection: close) and closed at once, so the client learns why
// rather than waiting in the kernel's backlog.
type listener struct {
	net.Listener
	set *conns
}

// Accept returns the next connection within the cap. Running out of file descriptors (or a
// connection reset before it was accepted) is waited out, as net/http does, rather than ending
// the server.
func (l *listener) Accept() (net.Conn, error) {
	l.set.accepted()
	var backoff time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if !retryable(err) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if c := l.set.admit(nc); c != nil {
			return c, nil
		}
		l.set.metrics.refused.Inc()
		refuse(nc)
	}
}

// retryable reports whether an Accept error is one the listener recovers from.
func retryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// refusal is the whole response to a connection over the cap.
var refusal = func() []byte {
	body := `{"type":"` + problemBase + `unavailable","title":"Unavailable","status":503,` +
		`"detail":"the gateway serves as many connections as it may (gateway.max_connections); retry later",` +
		`"code":"UNAVAILABLE","failed":[]}`
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// refuse answers a connection over the cap and closes it, waiting at most refuseWait for the
// answer to go out: the accept loop must not stall on one client.
func refuse(nc net.Conn) {
	_ = nc.SetWriteDeadline(time.Now().Add(refuseWait))
	_, _ = nc.Write(refusal)
	_ = nc.Close()
}

// refuseWait bounds the write of the refusal. It nearly always goes out at once: the
// connection's send buffer is empty.
const refuseWait = 100 * time.Millisecond
