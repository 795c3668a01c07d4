package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/internal/syncbuf"
	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// waitBound bounds every wait of these tests for the server to act: far longer than any limit
// the tests set, so reaching it means the server never acted.
const waitBound = 20 * time.Second

// startWith runs a gateway over svc with opts (a registry and a JSON log are added) and stops
// it when t ends.
func startWith(t testing.TB, svc kv.KVService, opts Options) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), logs: &syncbuf.Buffer{}}
	opts.Registerer, opts.Logger = e.reg, slog.New(slog.NewJSONHandler(e.logs, nil))
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = testMaxBody
	}
	g := New(svc, opts)
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e.gw, e.base, e.http = g, "http://"+g.Addr().String(), newClient(t)
	t.Cleanup(func() {
		if err := g.Shutdown(shutdownCtx(t)); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

// dial opens a raw connection to the gateway, closed when t ends; every read on it gives up
// after waitBound.
func (e *env) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(waitBound)); err != nil {
		t.Fatal(err)
	}
	return c
}

// rawResponse reads one response from c.
func rawResponse(t testing.TB, c net.Conn, r *bufio.Reader) response {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading a response body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, close: resp.Close, body: b}
}

// roundTrip writes req on c and reads the response.
func roundTrip(t testing.TB, c net.Conn, r *bufio.Reader, req string) response {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("writing a request: %v", err)
	}
	return rawResponse(t, c, r)
}

// waitClosed waits until the server closes c, reading (and dropping) whatever it sends first,
// and fails if it is still open after waitBound.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %s", waitBound)
	}
}

// healthz is a request any gateway answers 200.
const healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

// TestConnectionCap fills the gateway's connections with idle clients: the next connection is
// answered 503 problem+json and closed at once, and a place that frees up is taken again.
func TestConnectionCap(t *testing.T) {
	e := startWith(t, newService(t), Options{Limits: Limits{MaxConnections: 2}})
	first, second := e.dial(t), e.dial(t)
	firstR := bufio.NewReader(first)
	roundTrip(t, first, firstR, healthz).want(t, 200) // both are served, in accept order
	roundTrip(t, second, bufio.NewReader(second), healthz).want(t, 200)

	over := e.dial(t)
	r := rawResponse(t, over, bufio.NewReader(over))
	r.header.Set(headerTraceID, "-") // a refusal before any request has no trace id
	if r.status != 503 || r.header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.body), `"code":"UNAVAILABLE"`) || !r.close {
		t.Fatalf("a connection over the cap got %d %v %s; want 503 UNAVAILABLE problem+json, Connection: close", r.status, r.header, r.body)
	}
	waitClosed(t, over)
	if n := metricValue(t, e, "putallkv_gateway_http_connections_refused_total"); n != 1 {
		t.Fatalf("refused connections = %v, want 1", n)
	}

	// The server closes the first connection after this answer; by the time the client
	// sees the close, the place is free.
	roundTrip(t, first, firstR, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").want(t, 200)
	waitClosed(t, first)
	again := e.dial(t)
	roundTrip(t, again, bufio.NewReader(again), healthz).want(t, 200)
}

// TestConnectionsClosedWhenTooSlow checks every step's time limit: each connection below is
// closed by the server although the client never hangs up, and counted under its step.
func TestConnectionsClosedWhenTooSlow(t *testing.T) {
	const limit = 200 * time.Millisecond
	e := startWith(t, newService(t), Options{Limits: Limits{IdleTimeout: limit, HeaderTimeout: limit, BodyTimeout: limit}})

	t.Run("silent", func(t *testing.T) { // connects and sends nothing
		waitClosed(t, e.dial(t))
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := e.dial(t)
		roundTrip(t, c, bufio.NewReader(c), healthz).want(t, 200)
		waitClosed(t, c)
		if n := metricValue(t, e, "putallkv_gateway_http_connections_timed_out_total", "step", "idle"); n < 1 {
			t.Fatalf("idle closes = %v", n)
		}
	})
	t.Run("slowloris headers", func(t *testing.T) {
		c := e.dial(t)
		trickle(t, c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "+strings.Repeat("a", 1<<16))
		if n := metricValue(t, e, "putallkv_gateway_http_connections_timed_out_total", "step", "header"); n < 1 {
			t.Fatalf("header closes = %v", n)
		}
	})
	t.Run("slow body", func(t *testing.T) {
		c := e.dial(t)
		// Hertz reads the first 8 KiB of a body with the headers; the rest is the handler's.
		head := "PUT " + keyPath("slow") + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16384\r\n\r\n"
		if _, err := io.WriteString(c, head+strings.Repeat("v", 8<<10)); err != nil {
			t.Fatal(err)
		}
		trickle(t, c, strings.Repeat("v", 8<<10))
		if n := metricValue(t, e, "putallkv_gateway_http_connections_timed_out_total", "step", "body"); n < 1 {
			t.Fatalf("body closes = %v", n)
		}
	})
	e.do(t, "GET", "/healthz", nil).want(t, 200)
}

// trickle sends msg on c one byte at a time, a byte every 20ms, well within any per-read
// timeout, until the server closes c; it fails if the server is still reading after waitBound.
func trickle(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond) // the slow client's pace, not a synchronisation
	defer tick.Stop()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c) // returns when the server closes c (or at waitBound)
	}()
	for i := 0; i < len(msg); i++ {
		select {
		case <-closed:
			waitClosed(t, c)
			return
		case <-tick.C:
			if _, err := c.Write([]byte{msg[i]}); err != nil {
				<-closed
				return
			}
		}
	}
	t.Fatalf("the server read all %d bytes of a slow request without closing the connection", len(msg))
}

// stuck is a service whose Put never returns until the test lets it, as a store on a full or
// hung disk; everything else is the real service.
type stuck struct {
	kv.KVService
	entered chan struct{} // receives a value as each Put arrives
	release chan struct{} // closed to let every Put return
}

func newStuck(t *testing.T) *stuck {
	s := &stuck{KVService: newService(t), entered: make(chan struct{}, 16), release: make(chan struct{})}
	t.Cleanup(func() { close(s.release) }) // before the leak check: no goroutine stays stuck
	return s
}

func (s *stuck) Put(ctx context.Context, req *kv.PutRequest) (*kv.PutResponse, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.KVService.Put(ctx, req)
}

// TestRequestDeadline: a service that never answers does not hold the request: at the
// deadline (the configured one, or a shorter Request-Timeout) the caller gets 503
// UNAVAILABLE, and the connection serves the next request while the call is still stuck.
func TestRequestDeadline(t *testing.T) {
	svc := newStuck(t)
	e := startWith(t, svc, Options{Limits: Limits{RequestTimeout: 300 * time.Millisecond}})
	c := e.dial(t)
	r := bufio.NewReader(c)

	resp := roundTrip(t, c, r, "PUT "+keyPath("a")+" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nv")
	if p := resp.problem(t, 503, "UNAVAILABLE"); !strings.Contains(p.Detail, "300ms") {
		t.Fatalf("detail %q does not name the deadline", p.Detail)
	}
	<-svc.entered
	roundTrip(t, c, r, healthz).want(t, 200) // the same connection, free again

	// A caller may shorten its deadline; the configured one still bounds a longer one.
	p := e.do(t, "PUT", keyPath("b"), "v", headerRequestTimeout, "50ms").problem(t, 503, "UNAVAILABLE")
	if !strings.Contains(p.Detail, "50ms") {
		t.Fatalf("detail %q does not name the caller's deadline", p.Detail)
	}
	<-svc.entered
	p = e.do(t, "PUT", keyPath("c"), "v", headerRequestTimeout, "1h").problem(t, 503, "UNAVAILABLE")
	if !strings.Contains(p.Detail, "300ms") {
		t.Fatalf("detail %q: a Request-Timeout longer than the configured deadline was not capped", p.Detail)
	}
	<-svc.entered

	// While an abandoned write runs on, its Idempotency-Key is still in flight.
	e.do(t, "PUT", keyPath("d"), "v", headerIdemKey, "k1").problem(t, 503, "UNAVAILABLE")
	<-svc.entered
	e.do(t, "PUT", keyPath("d"), "v", headerIdemKey, "k1").problem(t, 409, codeKeyInUse)

	e.do(t, "GET", keyPath("d"), nil, headerRequestTimeout, "2").problem(t, 400, "INVALID_ARGUMENT")
}

// TestStuckCallsAreBounded: calls still running past their deadlines are bounded (two per
// connection allowed); past the bound a call is refused at once rather than started.
func TestStuckCallsAreBounded(t *testing.T) {
	svc := newStuck(t)
	e := startWith(t, svc, Options{Limits: Limits{MaxConnections: 1, RequestTimeout: 50 * time.Millisecond}})
	for i := range 2 {
		e.do(t, "PUT", keyPath(fmt.Sprint(i)), "v").problem(t, 503, "UNAVAILABLE")
		<-svc.entered
	}
	p := e.do(t, "PUT", keyPath("more"), "v").problem(t, 503, "UNAVAILABLE")
	if !strings.Contains(p.Detail, "past their deadlines") {
		t.Fatalf("detail %q", p.Detail)
	}
	if len(svc.entered) != 0 {
		t.Fatal("a call past the bound reached the service")
	}
}

// TestBrowserWritesRefused replays what a web page in a browser can send: a cross-origin
// "simple" POST (text/plain, form-encoded, no Content-Type), a DNS-rebound Host, and any
// request carrying a page's Origin. None writes, and no answer carries CORS headers.
func TestBrowserWritesRefused(t *testing.T) {
	e := start(t, wirings[0], nil)
	csrf := `{"entries":[{"key":"csrf","value":"pwned"}]}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		p := e.do(t, "POST", "/v1/kv:putAll", csrf, "Content-Type", ct).problem(t, 415, codeUnsupportedMediaType)
		t.Logf("%q: %s", ct, p.Detail)
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "application/json", "image/png"} {
		e.do(t, "PUT", keyPath("csrf"), "pwned", "Content-Type", ct).problem(t, 415, codeUnsupportedMediaType)
	}
	r := e.do(t, "POST", "/v1/kv:putAll", csrf, "Origin", "http://evil.example")
	r.problem(t, 403, codeOriginNotAllowed)
	e.do(t, "GET", keyPath("csrf"), nil).problem(t, 404, "NOT_FOUND")

	for _, host := range []string{"evil.example", "evil.example:8080", "127.0.0.1.nip.io", ""} {
		r := e.do(t, "GET", keyPath("csrf"), nil, "Host", host)
		if host == "" { // net/http sends the URL's host; send none by hand
			c := e.dial(t)
			r = roundTrip(t, c, bufio.NewReader(c), "GET "+keyPath("csrf")+" HTTP/1.0\r\n\r\n")
		}
		r.problem(t, 421, codeMisdirected)
	}
	for _, resp := range []response{r, e.do(t, "GET", "/healthz", nil, "Origin", "http://evil.example")} {
		for name := range resp.header {
			if strings.HasPrefix(name, "Access-Control-") {
				t.Fatalf("CORS header %s in %v", name, resp.header)
			}
		}
	}
	e.do(t, "OPTIONS", keyPath("csrf"), nil, "Origin", "http://evil.example",
		"Access-Control-Request-Method", "PUT").problem(t, 405, codeMethodNotAllowed)

	// What the gateway takes: JSON with parameters; raw values as octet-stream, text or none.
	e.do(t, "POST", "/v1/kv:putAll", `{"entries":[{"key":"ok","value":"1"}]}`, "Content-Type", "application/json; charset=utf-8").want(t, 200)
	for _, ct := range []string{"application/octet-stream", "text/plain; charset=utf-8", ""} {
		e.do(t, "PUT", keyPath("ok"), "v", "Content-Type", ct).want(t, 200)
	}
	for _, host := range []string{"localhost", "LOCALHOST:1", "127.0.0.1", "[::1]:80"} {
		e.do(t, "GET", "/healthz", nil, "Host", host).want(t, 200)
	}
}

// TestAllowedHostsAndOrigins: configured names and origins are served, with CORS headers for
// an allowed origin's page and a preflight that names the route's methods.
func TestAllowedHostsAndOrigins(t *testing.T) {
	e := startWith(t, newService(t), Options{AllowedHosts: []string{"kv.internal"}, AllowedOrigins: []string{"https://app.example"}})
	e.do(t, "GET", "/healthz", nil, "Host", "kv.internal:8080").want(t, 200)
	e.do(t, "GET", "/healthz", nil, "Host", "localhost").problem(t, 421, codeMisdirected)

	r := e.do(t, "PUT", keyPath("k"), "v", "Host", "kv.internal", "Origin", "https://app.example").want(t, 201)
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("CORS headers of an allowed origin: %v", r.header)
	}
	r = e.do(t, "OPTIONS", keyPath("k"), nil, "Host", "kv.internal", "Origin", "https://app.example",
		"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "if-match")
	r.want(t, 204)
	if !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "PUT") || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "If-Match") {
		t.Fatalf("preflight headers: %v", r.header)
	}
	e.do(t, "OPTIONS", keyPath("k"), nil, "Host", "kv.internal", "Origin", "https://other.example",
		"Access-Control-Request-Method", "PUT").problem(t, 403, codeOriginNotAllowed)
}

// TestAmbiguousBodyLength sends what a smuggling attack behind a proxy sends: two different
// Content-Length headers, or Content-Length beside Transfer-Encoding. Each is refused and its
// connection closed; repeating the same length is harmless and served.
func TestAmbiguousBodyLength(t *testing.T) {
	e := start(t, wirings[0], nil)
	for _, head := range []string{
		"Content-Length: 1\r\nContent-Length: 30\r\n",
		"Content-length: 30\r\nContent-Length: 1\r\n",
		"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
		"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n",
	} {
		c := e.dial(t)
		smuggled := "PUT " + keyPath("smuggled") + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		r := roundTrip(t, c, bufio.NewReader(c), "PUT "+keyPath("front")+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+head+"\r\n1\r\n"+smuggled)
		r.problem(t, 400, "INVALID_ARGUMENT")
		if !r.close {
			t.Fatalf("%q: the connection stays open after an ambiguous body length", head)
		}
		waitClosed(t, c)
	}
	e.do(t, "GET", keyPath("front"), nil).problem(t, 404, "NOT_FOUND")
	e.do(t, "GET", keyPath("smuggled"), nil).problem(t, 404, "NOT_FOUND")

	c := e.dial(t)
	roundTrip(t, c, bufio.NewReader(c), "PUT "+keyPath("same")+" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nv").want(t, 201)
}

// TestHertzErrorsAreProblems: requests Hertz refuses before routing are answered in
// problem+json like every other error.
func TestHertzErrorsAreProblems(t *testing.T) {
	e := start(t, wirings[0], nil)
	for _, tc := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"garbage", "\x00\x01 nonsense\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"bad header", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"bad length", "PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", 400, "INVALID_ARGUMENT"},
		{"headers too large", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + strings.Repeat("b", maxHeaderBytes) + "\r\n\r\n", 431, codeHeadersTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			r := roundTrip(t, c, bufio.NewReader(c), tc.req)
			r.problem(t, tc.status, tc.code)
			waitClosed(t, c)
		})
	}
	e.do(t, "GET", "/healthz", nil).want(t, 200)
}

// TestHead: HEAD on a key answers GET's headers without the body.
func TestHead(t *testing.T) {
	e := start(t, wirings[0], nil)
	etag := e.put(t, key(t, "k"), "hello")
	r := e.do(t, "HEAD", keyPath(key(t, "k")), nil).want(t, 200)
	if r.header.Get("ETag") != etag || r.header.Get("Content-Length") != "5" || len(r.body) != 0 {
		t.Fatalf("HEAD: %v %q; want ETag %s, Content-Length 5, no body", r.header, r.body, etag)
	}
	e.do(t, "HEAD", keyPath(key(t, "k")), nil, "If-None-Match", etag).want(t, 304)
	r = e.do(t, "HEAD", keyPath(key(t, "absent")), nil).want(t, 404)
	if r.header.Get("Content-Type") != "application/problem+json" || len(r.body) != 0 {
		t.Fatalf("HEAD of an absent key: %v %q", r.header, r.body)
	}
	e.do(t, "HEAD", "/healthz", nil).want(t, 200)
}

// TestIDLModeNames: the IDL's spelling of the modes is taken as well as the gateway's.
func TestIDLModeNames(t *testing.T) {
	e := start(t, wirings[0], nil)
	var res batchResult
	e.do(t, "POST", "/v1/kv:putAll", `{"mode":"BEST_EFFORT","entries":[{"key":"m1","value":"1"},{"key":"m2","value":"2","expected_version":7}]}`).want(t, 200).json(t, &res)
	if res.Applied != 1 {
		t.Fatalf("BEST_EFFORT applied %d of 2 (one precondition fails), want 1: %+v", res.Applied, res)
	}
	e.do(t, "POST", "/v1/kv:putAll", `{"mode":"ATOMIC","entries":[{"key":"m3","value":"3"},{"key":"m4","value":"4","expected_version":7}]}`).problem(t, 412, "VERSION_MISMATCH")
	e.do(t, "POST", "/v1/kv:deleteAll", `{"mode":"BEST_EFFORT","entries":[{"key":"m1"},{"key":"nope"}]}`).want(t, 200)
}

// TestConcurrentClientsWithinTheCap is a check of the connection layer under -race: clients at
// the cap, each sending requests one after another on its keep-alive connection, all served.
func TestConcurrentClientsWithinTheCap(t *testing.T) {
	const clients = 8
	e := startWith(t, newService(t), Options{Limits: Limits{MaxConnections: clients}})
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = e.dial(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Go(func() {
			r := bufio.NewReader(c)
			for j := range 20 {
				req := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nv", keyPath(fmt.Sprintf("c%d/%d", i, j)))
				if _, err := io.WriteString(c, req); err != nil {
					errs <- err
					return
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 201 {
					errs <- fmt.Errorf("client %d request %d: status %d", i, j, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
