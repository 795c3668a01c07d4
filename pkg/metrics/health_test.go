package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestHealthRoutes serves the probes on a real admin server and flips readiness.
func TestHealthRoutes(t *testing.T) {
	var failing atomic.Bool
	ready := func(ctx context.Context) error {
		if failing.Load() {
			return errors.New("the write-ahead log is failing")
		}
		return ctx.Err()
	}
	a, err := StartAdmin("127.0.0.1:0", NewRegistry(), discardLogger(), Routes(HealthRoutes(ready, time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	base := "http://" + a.Addr().String()

	tests := []struct {
		path     string
		failing  bool
		wantCode int
		wantBody string
	}{
		{"/healthz", false, http.StatusOK, `{"status":"ok"}` + "\n"},
		{"/readyz", false, http.StatusOK, `{"status":"ready"}` + "\n"},
		{"/healthz", true, http.StatusOK, `{"status":"ok"}` + "\n"},
		{"/readyz", true, http.StatusServiceUnavailable, `{"status":"unavailable","detail":"not ready: the write-ahead log is failing"}` + "\n"},
	}
	for _, tt := range tests {
		failing.Store(tt.failing)
		if code, body := get(t, base+tt.path); code != tt.wantCode || body != tt.wantBody {
			t.Errorf("GET %s (failing %v) = %d %q, want %d %q", tt.path, tt.failing, code, body, tt.wantCode, tt.wantBody)
		}
	}
}
