package metrics

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// AdminLimits bound the admin server, so that it stays reachable while the service's own
// ports are full, and so that a command that hangs (a snapshot on a stuck disk) frees its
// caller.
type AdminLimits struct {
	// MaxConnections caps the admin connections open at once; one more is answered 503 and
	// closed. Not positive means DefaultAdminLimits'.
	MaxConnections int
	// RequestTimeout is the deadline of each Route (the caller's commands; /metrics and pprof,
	// which stream for as long as asked, have none): at the deadline the caller gets 503
	// problem+json with code UNAVAILABLE and the handler's context is cancelled. Not positive
	// means DefaultAdminLimits'.
	RequestTimeout time.Duration
}

// DefaultAdminLimits are what zero fields of AdminLimits take.
var DefaultAdminLimits = AdminLimits{MaxConnections: 16, RequestTimeout: time.Minute}

func (l AdminLimits) applyAdmin(s *adminSetup) { s.limits = l }

func (l AdminLimits) withDefaults() AdminLimits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultAdminLimits.MaxConnections
	}
	if l.RequestTimeout <= 0 {
		l.RequestTimeout = DefaultAdminLimits.RequestTimeout
	}
	return l
}

// idleTimeout closes an admin keep-alive connection that waits this long for its next request.
const idleTimeout = time.Minute

// withDeadline answers a request to h that takes longer than d with 503 problem+json.
func withDeadline(h http.Handler, d time.Duration) http.Handler {
	body := fmt.Sprintf(`{"type":"about:blank","title":"Service Unavailable","status":503,`+
		`"detail":"the command did not complete within its deadline of %s (admin.request_timeout)","code":"UNAVAILABLE"}`, d)
	th := http.TimeoutHandler(h, d, body)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		th.ServeHTTP(problemOnTimeout{w}, r)
	})
}

// problemOnTimeout labels the 503 that http.TimeoutHandler writes at the deadline (with no
// Content-Type of its own) as problem+json.
type problemOnTimeout struct{ http.ResponseWriter }

func (w problemOnTimeout) WriteHeader(code int) {
	if code == http.StatusServiceUnavailable && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/problem+json")
	}
	w.ResponseWriter.WriteHeader(code)
}

// cappedListener hands out at most max connections at once; one more is answered 503 and
// closed at once, so a client learns why instead of waiting in the kernel's backlog.
type cappedListener struct {
	net.Listener
	mu   sync.Mutex
	open int
	max  int
}

// refusal is the whole answer to a connection over the cap.
var refusal = func() []byte {
	const body = "too many admin connections are open (admin.max_connections); retry later\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// Accept returns the next connection within the cap.
func (l *cappedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		admit := l.open < l.max
		if admit {
			l.open++
		}
		l.mu.Unlock()
		if admit {
			return &countedConn{Conn: c, l: l}, nil
		}
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(refusal)
		_ = c.Close()
	}
}

// countedConn gives its place back when closed.
type countedConn struct {
	net.Conn
	l    *cappedListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
