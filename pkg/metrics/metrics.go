// Package metrics provides a Prometheus registry preloaded with the Go runtime and process
// collectors, and the admin HTTP server that exposes it at /metrics next to the pprof handlers
// at /debug/pprof/. It knows nothing of the service whose metrics it serves: callers register
// their own collectors on the registry. Durability and RedisCluster are the adapters here, from
// the observer events of the write-ahead log and the durable store, and of the redis_cluster
// engine, matched by method set so that none of those packages is imported.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every series of the program's own (putallkv_kv_requests_total,
// putallkv_wal_fsync_seconds, ...), as the Namespace of their prometheus Opts, so that they
// sort together and never collide with a library's or another program's on a shared
// Prometheus. The go_* and process_* collectors keep their standard names.
const Namespace = "putallkv"

// NewRegistry returns a registry with the Go runtime (go_*) and process (process_*) collectors
// registered. A registry of our own, rather than prometheus.DefaultRegisterer, means only what
// the program registers on purpose is exported, and tests get a clean one each.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// readHeaderTimeout bounds how long a client may take to send request headers, so idle or slow
// connections cannot pile up. There is no write timeout: /debug/pprof/profile and trace stream
// for as long as the caller asks (30s by default).
const readHeaderTimeout = 10 * time.Second

// AdminServer is the operators' HTTP endpoint: /metrics in the Prometheus text format and the
// net/http/pprof handlers under /debug/pprof/. It is kept apart from the service's own listeners
// so it can be bound to a private address.
type AdminServer struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

// Route is an extra admin endpoint: a net/http ServeMux pattern and its handler.
type Route struct {
	Pattern string
	Handler http.Handler
}

// StartAdmin listens on addr (host:port; port 0 picks a free one, see Addr) and serves reg and
// pprof there in the background until Shutdown. It listens before returning, so an address in
// use is reported here rather than lost in a goroutine. The handlers are on the server's own
// mux, so it serves exactly /metrics and /debug/pprof/ and nothing else registered on
// http.DefaultServeMux. (Importing net/http/pprof also registers pprof on DefaultServeMux, so
// no program using this package should serve DefaultServeMux on a public address.)
// Serving errors are logged to logger, or to slog.Default() if logger is nil. opts add the
// caller's own admin endpoints (operations commands, as Routes) to the same mux, guard it all
// (AdminSecurity), and cap its connections and bound each route's handling (AdminLimits).
func StartAdmin(addr string, reg *prometheus.Registry, logger *slog.Logger, opts ...AdminOption) (*AdminServer, error) {
	var setup adminSetup
	for _, o := range opts {
		o.applyAdmin(&setup)
	}
	limits := setup.limits.withDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: admin server: %w", err)
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelError)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errorLog}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, r := range setup.routes {
		mux.Handle(r.Pattern, withDeadline(r.Handler, limits.RequestTimeout))
	}

	a := &AdminServer{
		ln: ln,
		srv: &http.Server{Handler: setup.security.handler(mux), ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout: idleTimeout, ErrorLog: errorLog},
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		capped := &cappedListener{Listener: ln, max: limits.MaxConnections}
		if err := a.srv.Serve(setup.security.listener(capped)); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return a, nil
}

// Addr returns the address the server listens on, with the actual port when addr had port 0.
func (a *AdminServer) Addr() net.Addr { return a.ln.Addr() }

// Shutdown stops accepting connections and waits, until ctx is done, for in-flight requests
// (a running CPU profile among them) to finish and for the serving goroutine to return. It
// returns ctx's error if ctx ends first; connections still open are then closed.
func (a *AdminServer) Shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	<-a.done // Serve returns as soon as Shutdown has closed the listener
	if err != nil {
		// Shutdown gave up waiting: close the connections still open, whose handlers see their
		// request context cancelled. Close's own error could only be about the listener, which
		// Shutdown has closed already.
		_ = a.srv.Close()
	}
	return err
}
