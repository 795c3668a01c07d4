package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// HealthRoutes returns the probes GET /healthz and GET /readyz for the admin server, so that a
// process whose HTTP gateway is off can still be probed. /healthz answers 200 {"status":"ok"}
// while the process serves HTTP at all; /readyz answers 200 {"status":"ready"} when ready
// returns nil within timeout, else 503 {"status":"unavailable","detail":"not ready: ..."}.
// ready is the same check the gateway's /readyz makes, so both ports agree.
func HealthRoutes(ready func(context.Context) error, timeout time.Duration) []Route {
	return []Route{
		{Pattern: "GET /healthz", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeStatus(w, http.StatusOK, probeStatus{Status: "ok"})
		})},
		{Pattern: "GET /readyz", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			if err := ready(ctx); err != nil {
				writeStatus(w, http.StatusServiceUnavailable, probeStatus{Status: "unavailable", Detail: "not ready: " + err.Error()})
				return
			}
			writeStatus(w, http.StatusOK, probeStatus{Status: "ready"})
		})},
	}
}

// probeStatus is the body of /healthz and /readyz.
type probeStatus struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeStatus(w http.ResponseWriter, code int, s probeStatus) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(s)
}
