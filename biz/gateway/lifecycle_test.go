package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/internal/syncbuf"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// shutdownCtx bounds a test's shutdown generously: a shutdown that works takes milliseconds,
// one that waits for idle connections would take Hertz's idle timeout (minutes).
func shutdownCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestReadyz(t *testing.T) {
	var ready atomic.Bool
	e := start(t, wirings[0], func(context.Context) error {
		if !ready.Load() {
			return errors.New("store still loading")
		}
		return nil
	})
	p := e.do(t, "GET", "/readyz", nil).problem(t, 503, "UNAVAILABLE")
	if !strings.Contains(p.Detail, "store still loading") {
		t.Fatalf("detail %q does not say why", p.Detail)
	}
	e.do(t, "GET", "/healthz", nil).want(t, 200) // up, if not ready
	ready.Store(true)
	e.do(t, "GET", "/readyz", nil).want(t, 200)
}

// TestUpstreamUnreachable runs the separate-tier gateway over an SDK client whose server is
// gone: calls are 503 UNAVAILABLE, and a readiness check that pings the upstream fails.
func TestUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := kvclient.New([]string{dead}, kvclient.WithConnectTimeout(200*time.Millisecond), kvclient.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	g := New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func(ctx context.Context) error {
		_, err := c.Get(ctx, &kv.GetRequest{Key: "readyz"})
		if kvclient.CodeOf(err) == kv.ErrorCode_UNAVAILABLE {
			return err
		}
		return nil // any answer, NOT_FOUND included, means the upstream is there
	}})
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(shutdownCtx(t)) })
	e := &env{base: "http://" + g.Addr().String(), http: newClient(t)}

	e.do(t, "PUT", keyPath("k"), "v").problem(t, 503, "UNAVAILABLE")
	e.do(t, "GET", keyPath("k"), nil).problem(t, 503, "UNAVAILABLE")
	e.do(t, "POST", "/v1/kv:putAll", `{"entries":[{"key":"k","value":"v"}]}`).problem(t, 503, "UNAVAILABLE")
	e.do(t, "GET", "/readyz", nil).problem(t, 503, "UNAVAILABLE")
}

func TestStartRefusesAnAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := New(nil, Options{})
	if err := g.Start(ln.Addr().String()); err == nil {
		t.Fatal("Start on an address in use succeeded")
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a gateway that never started: %v", err)
	}
}

func TestStartRefusesDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := New(nil, Options{Registerer: reg})
	if err := first.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer first.Shutdown(shutdownCtx(t))
	if err := New(nil, Options{Registerer: reg}).Start("127.0.0.1:0"); err == nil {
		t.Fatal("a second gateway registered the same metrics")
	}
}

// TestShutdownClosesIdleConnections leaves a keep-alive connection open, as HTTP clients do:
// Shutdown must close it rather than wait for the client.
func TestShutdownClosesIdleConnections(t *testing.T) {
	e := start(t, wirings[0], nil)
	e.do(t, "GET", "/healthz", nil).want(t, 200)
	if err := e.gw.Shutdown(shutdownCtx(t)); err != nil {
		t.Fatalf("Shutdown with an idle keep-alive connection: %v", err)
	}
	if _, err := e.http.Get(e.base + "/healthz"); err == nil {
		t.Fatal("the gateway still serves after Shutdown")
	}
}

// TestShutdownFinishesInFlight holds a request in the service while the gateway shuts down:
// the request completes, and Shutdown returns once it has.
func TestShutdownFinishesInFlight(t *testing.T) {
	e := start(t, wirings[0], nil)
	e.do(t, "GET", "/healthz", nil).want(t, 200) // and an idle connection besides
	tr := e.hold.arm()
	held := make(chan response, 1)
	c := newClient(t)
	go func() {
		held <- send(t, c, e.base, "POST", "/v1/kv:putAll", `{"entries":[{"key":"hold/k","value":"v"}]}`)
	}()
	<-tr.entered

	begun := make(chan struct{})
	e.gw.h.OnShutdown = append(e.gw.h.OnShutdown, func(context.Context) { close(begun) })
	done := make(chan error, 1)
	go func() { done <- e.gw.Shutdown(shutdownCtx(t)) }()
	<-begun
	close(tr.release)

	r := (<-held).want(t, 200)
	if !r.close {
		t.Errorf("response during shutdown without Connection: close: %v", r.header)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// panicky is the real service with a Get that panics, as a bug in the gateway's own process
// would (the RPC handler guards its side; in-process, the gateway guards itself).
type panicky struct{ kv.KVService }

func (panicky) Get(context.Context, *kv.GetRequest) (*kv.GetResponse, error) {
	panic("a bug holding a secret value")
}

func TestHandlerPanicIsInternal(t *testing.T) {
	logs := &syncbuf.Buffer{}
	g := New(panicky{newService(t)}, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(shutdownCtx(t)) })
	e := &env{base: "http://" + g.Addr().String(), http: newClient(t)}

	p := e.do(t, "GET", keyPath("k"), nil).problem(t, 500, "INTERNAL")
	if strings.Contains(p.Detail, "secret") {
		t.Fatalf("the panic leaked to the caller: %q", p.Detail)
	}
	if !strings.Contains(logs.String(), `"msg":"gateway: panic"`) || !strings.Contains(logs.String(), p.TraceID) {
		t.Fatalf("the panic was not logged with its trace id: %s", logs)
	}
	e.do(t, "PUT", keyPath("k"), "v").want(t, 201)
}
