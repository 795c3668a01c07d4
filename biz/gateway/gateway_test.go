package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/biz/service"
	"github.com/putallkv/putallkv/handler"
	"github.com/putallkv/putallkv/internal/syncbuf"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/leakcheck"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/traceid"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// Limits small enough for the tests to reach.
const (
	testMaxBody    = 64 << 10
	testMaxValue   = 16 << 10
	testMaxKey     = 256
	testMaxEntries = 100
)

// env is one running gateway over the real service, with what the tests observe it through.
type env struct {
	gw    *Gateway
	base  string       // http://host:port
	http  *http.Client // one keep-alive client; tests may make others
	probe *probe       // server side: trace ids seen, faults injected
	hold  *hold        // gateway side: holds marked PutAlls in flight
	reg   *prometheus.Registry
	logs  *syncbuf.Buffer // the gateway's access log, as JSON lines
}

// wiring is one way to hand the gateway its kv.KVService.
type wiring struct {
	name string
	// upstream returns the service the gateway calls, built over the server-side handler h;
	// everything it starts stops when t ends.
	upstream func(t *testing.T, h kv.KVService) kv.KVService
}

// wirings are the two deployments of docs/design.md: the handler itself in the server's process,
// and a separate tier calling a real Kitex RPC server through the SDK.
var wirings = []wiring{
	{name: "in-process", upstream: func(_ *testing.T, h kv.KVService) kv.KVService { return h }},
	{name: "rpc", upstream: startRPC},
}

// newService is the real service over a fresh in-memory store, with the test limits.
func newService(t testing.TB) kv.KVService {
	t.Helper()
	engine, err := store.NewMemory(store.Options{Shards: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	svc, err := service.New(engine, service.Options{
		Limits:            service.Limits{MaxKeyBytes: testMaxKey, MaxValueBytes: testMaxValue, MaxBatchEntries: testMaxEntries},
		IdempotencyWindow: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// startRPC serves h with a real Kitex server on a loopback port, as internal/server does, and
// returns an SDK client of it.
func startRPC(t *testing.T, h kv.KVService) kv.KVService {
	return startRPCWith(t, h)
}

// startRPCWith is startRPC with more server options.
func startRPCWith(t *testing.T, h kv.KVService, opts ...server.Option) kv.KVService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan error, 1), make(chan error, 1)
	srv := kvservice.NewServer(h, append(append(handler.ServerOptions(handler.Transport{
		MaxRequestBytes: 2 * testMaxBody, DrainTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}), opts...),
		server.WithListener(ln),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "putallkv"}),
		server.WithExitWaitTime(time.Second),
		server.WithExitSignal(func() <-chan error { return stop }),
	)...)
	go func() { done <- srv.Run() }()
	c, err := kvclient.New([]string{ln.Addr().String()}, kvclient.WithRPCTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		stop <- nil
		if err := <-done; err != nil {
			t.Errorf("rpc server: %v", err)
		}
	})
	return c
}

// start runs a gateway over w's wiring of the real service and stops it when t ends.
func start(t *testing.T, w wiring, ready func(context.Context) error) *env {
	t.Helper()
	e := &env{probe: &probe{seen: map[string]string{}}, reg: prometheus.NewRegistry(), logs: &syncbuf.Buffer{}}
	e.probe.KVService = newService(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.hold = &hold{KVService: w.upstream(t, handler.New(e.probe, quiet))}
	g := New(e.hold, Options{
		MaxBodyBytes: testMaxBody,
		Registerer:   e.reg,
		Logger:       slog.New(slog.NewJSONHandler(e.logs, nil)),
		AccessLog:    AccessLogAll,
		Ready:        ready,
	})
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e.gw, e.base = g, "http://"+g.Addr().String()
	e.http = newClient(t)
	t.Cleanup(func() { testnet.Stop(t, g) })
	return e
}

// newClient is an HTTP client with its own connections, closed when t ends.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// probe decorates the real service on the server side of the wiring. It records the
// trace id each Put arrived with, and fails a Put whose key is "fault/<CODE>" with that
// code (or panics for "fault/panic"), standing in for parts of the system (admission, auth)
// that can return those codes but are not built yet.
type probe struct {
	kv.KVService
	mu   sync.Mutex
	seen map[string]string // key -> trace id of its last Put
}

// faultPrefix marks the keys whose Put the probe fails.
const faultPrefix = "fault/"

func (p *probe) Put(ctx context.Context, req *kv.PutRequest) (*kv.PutResponse, error) {
	id, _ := traceid.From(ctx)
	p.mu.Lock()
	p.seen[req.Key] = id
	p.mu.Unlock()
	if name, ok := strings.CutPrefix(req.Key, faultPrefix); ok {
		if name == "panic" {
			panic("injected panic with a secret value")
		}
		code, err := kv.ErrorCodeFromString(name)
		if err != nil {
			return nil, err
		}
		return nil, &kv.KVError{Code: code, Message: "injected " + name, RetryAfterMs: retryAfterMsOf(code)}
	}
	return p.KVService.Put(ctx, req)
}

// retryAfterMsOf is what an injected fault asks the caller to wait: 1.5s for admission.
func retryAfterMsOf(code kv.ErrorCode) int64 {
	if code == kv.ErrorCode_RESOURCE_EXHAUSTED {
		return 1500
	}
	return 0
}

// traceIDOf is the trace id the server saw with the last Put of key.
func (p *probe) traceIDOf(key string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[key]
}

// hold decorates the gateway's service so a test can keep a request in flight for exactly as
// long as it needs: once armed, it stops the next PutAll whose first key starts with
// holdPrefix, announces it on the trap's entered, and lets it go on when release is closed.
type hold struct {
	kv.KVService
	mu   sync.Mutex
	trap *trap
}

// trap is one armed hold.
type trap struct {
	entered chan struct{} // closed when the held call arrives
	release chan struct{} // the test closes it to let the call go on
}

// holdPrefix marks the PutAll calls a hold may hold.
const holdPrefix = "hold/"

// arm sets a trap for the next marked PutAll.
func (h *hold) arm() *trap {
	tr := &trap{entered: make(chan struct{}), release: make(chan struct{})}
	h.mu.Lock()
	h.trap = tr
	h.mu.Unlock()
	return tr
}

func (h *hold) PutAll(ctx context.Context, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	if tr := h.take(req); tr != nil {
		close(tr.entered)
		<-tr.release
	}
	return h.KVService.PutAll(ctx, req)
}

// take disarms and returns the trap if req is marked and one is set.
func (h *hold) take(req *kv.PutAllRequest) *trap {
	if len(req.Entries) == 0 || !strings.HasPrefix(req.Entries[0].Key, holdPrefix) {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	tr := h.trap
	h.trap = nil
	return tr
}

// response is what a test reads of an HTTP response.
type response struct {
	status int
	header http.Header
	close  bool // the server said Connection: close (which net/http removes from header)
	body   []byte
}

// do sends a request to target ("/path?query", sent byte for byte as given, never cleaned or
// re-escaped) with body (nil for none; an io.Reader of unknown length is sent chunked) and
// headers as name, value pairs.
func (e *env) do(t *testing.T, method, target string, body any, headers ...string) response {
	t.Helper()
	return send(t, e.http, e.base, method, target, body, headers...)
}

func send(t *testing.T, c *http.Client, base, method, target string, body any, headers ...string) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = struct{ io.Reader }{b} // hide the length: chunked
	default:
		t.Fatalf("body of type %T", body)
	}
	req, err := http.NewRequest(method, base, r)
	if err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(target, "?")
	req.URL.Opaque, req.URL.RawQuery = path, query
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json") // unless headers say otherwise
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, close: resp.Close, body: b}
}

// want fails unless r has status.
func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	return r
}

// json decodes r's body into v.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// problem checks that r is a problem+json of status and code, well formed, and returns it.
func (r response) problem(t *testing.T, status int, code string) problem {
	t.Helper()
	r.want(t, status)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	r.json(t, &p)
	wantType := problemBase + strings.ReplaceAll(strings.ToLower(code), "_", "-")
	if p.Code != code || p.Status != status || p.Type != wantType || p.Title == "" || p.Detail == "" || p.Failed == nil {
		t.Fatalf("problem %+v; want code %s, status %d, type %s, a title, a detail and failed", p, code, status, wantType)
	}
	if p.TraceID == "" || p.TraceID != r.header.Get(headerTraceID) {
		t.Fatalf("problem request_id %q, header %q", p.TraceID, r.header.Get(headerTraceID))
	}
	return p
}

// keyPath is the path of key with every byte but the unreserved ones percent-encoded, the
// way a careful client sends it.
func keyPath(key string) string {
	var b strings.Builder
	b.WriteString(keyPrefix)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_~", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(hex2(c)))
		}
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// literalPath is the path of key with only what must be escaped escaped ('/' stays as is), the
// way a hurried client sends it.
func literalPath(key string) string {
	return keyPrefix + strings.ReplaceAll(url.PathEscape(key), "%2F", "/")
}
