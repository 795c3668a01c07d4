package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// get fetches url with a client of its own whose connections are closed afterwards, so no
// keep-alive goroutine outlives the test, and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestAdminServer(t *testing.T) {
	reg := NewRegistry()
	requests := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_requests_total", Help: "Requests seen by the test."})
	reg.MustRegister(requests)
	requests.Add(3)

	a, err := StartAdmin("127.0.0.1:0", reg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr().String()

	t.Run("metrics", func(t *testing.T) {
		status, body := get(t, base+"/metrics")
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		for _, want := range []string{"test_requests_total 3", "go_goroutines ", "process_cpu_seconds_total "} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})

	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"} {
		t.Run(path, func(t *testing.T) {
			if status, _ := get(t, base+path); status != http.StatusOK {
				t.Errorf("GET %s: status %d, want 200", path, status)
			}
		})
	}

	t.Run("nothing else", func(t *testing.T) {
		if status, _ := get(t, base+"/"); status != http.StatusNotFound {
			t.Errorf("GET /: status %d, want 404", status)
		}
	})

	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c, err := net.Dial("tcp", a.Addr().String())
	if err == nil {
		c.Close()
		t.Error("admin address still accepts connections after Shutdown")
	}
}

func TestStartAdminErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, addr := range []string{busy.Addr().String(), "no-port", "127.0.0.1:99999"} {
		t.Run(addr, func(t *testing.T) {
			a, err := StartAdmin(addr, NewRegistry(), discardLogger())
			if err == nil {
				_ = a.Shutdown(context.Background())
				t.Fatalf("StartAdmin(%q) succeeded, want an error", addr)
			}
			if !strings.Contains(err.Error(), "metrics: admin server") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}
