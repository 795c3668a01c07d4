package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cloudwego/kitex/pkg/limiter"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/server"
	"github.com/prometheus/client_golang/prometheus"

	"putallkv/biz/gateway"
	"putallkv/biz/service"
	"putallkv/handler"
	"putallkv/kitex_gen/kv"
	"putallkv/kitex_gen/kv/kvservice"
	"putallkv/pkg/buildinfo"
	"putallkv/pkg/config"
	"putallkv/pkg/kvclient"
	"putallkv/pkg/metrics"
	"putallkv/pkg/store"
	"putallkv/pkg/wal"
)

// app is one running putallkv process: the store, the Kitex RPC server, the HTTP gateway and
// the admin endpoint; or, as a separate gateway tier, the gateway over a pooled client of
// upstream RPC servers.
type app struct {
	cfg      *config.Config
	log      *slog.Logger
	engine   store.Engine
	durable  *store.Durable // the engine, when store.data_dir is set
	svc      *service.Service
	rpcLn    net.Listener
	rpc      server.Server
	rpcStop  chan error // a value here makes the Kitex server stop gracefully
	rpcDone  chan error // receives Run's result
	gw       *gateway.Gateway
	upstream *kvclient.Client // the gateway tier's client
	admin    *metrics.AdminServer
	sec      security
}

// startApp builds and starts every part from cfg; on error, whatever started is stopped. With
// gateway.upstream set it starts a gateway tier; otherwise a server with its own store.
func startApp(cfg *config.Config, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, rpcStop: make(chan error, 1), rpcDone: make(chan error, 1)}
	defer func() {
		if err != nil {
			_ = a.close()
		}
	}()
	if err := a.loadSecurity(); err != nil {
		return nil, err
	}
	if err := checkFDLimit(cfg, log); err != nil {
		return nil, err
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(buildinfo.Get().Collector("putallkv"))
	var api kv.KVService
	var ready func(context.Context) error
	if upstreams := cfg.Gateway.Upstreams(); len(upstreams) > 0 {
		upstreamOpts, err := a.upstreamOptions()
		if err != nil {
			return nil, err
		}
		if a.upstream, err = kvclient.New(upstreams, upstreamOpts...); err != nil {
			return nil, fmt.Errorf("gateway.upstream: %w", err)
		}
		api, ready = a.upstream, a.upstreamReady
	} else {
		if err := a.startServer(reg); err != nil {
			return nil, err
		}
		api, ready = handler.New(a.svc, log), a.storeReady
	}
	if cfg.Gateway.Addr != "" {
		a.gw = gateway.New(api, gateway.Options{MaxBodyBytes: cfg.Gateway.MaxBodyBytes, Registerer: reg, Logger: log, Ready: ready,
			Auth: a.sec.auth, TLS: a.tlsFor(cfg.TLS.Gateway),
			Limits: gatewayLimits(cfg.Gateway), AllowedHosts: cfg.Gateway.Hosts(), AllowedOrigins: cfg.Gateway.Origins()})
		if err := a.gw.Start(cfg.Gateway.Addr); err != nil {
			a.gw = nil
			return nil, fmt.Errorf("gateway.addr: %w", err)
		}
	}
	routes := append(metrics.HealthRoutes(ready, readyTimeout),
		metrics.Route{Pattern: "POST /admin/snapshot", Handler: http.HandlerFunc(a.serveSnapshot)})
	if a.admin, err = metrics.StartAdmin(cfg.Admin.Addr, reg, log, a.adminSecurity(), adminLimits(cfg.Admin), metrics.Routes(routes)); err != nil {
		return nil, fmt.Errorf("admin.addr: %w", err)
	}
	log.Info("putallkv serving", "rpc", a.rpcAddr(), "admin", a.adminAddr(), "gateway", a.gatewayAddr(),
		"upstream", cfg.Gateway.Upstream)
	return a, nil
}

// startServer opens the store and starts the service's Kitex server.
func (a *app) startServer(reg *prometheus.Registry) error {
	cfg := a.cfg
	recovery, err := a.openStore(reg)
	if err != nil {
		return err
	}
	a.svc, err = service.New(a.engine, service.Options{
		Limits: service.Limits{
			MaxKeyBytes:     cfg.Limits.MaxKeyBytes,
			MaxValueBytes:   cfg.Limits.MaxValueBytes,
			MaxBatchEntries: cfg.Limits.MaxBatchEntries,
		},
		IdempotencyWindow:   cfg.Idempotency.Window,
		IdempotencyMaxBytes: int64(cfg.Idempotency.MaxBytes),
		Admission:           admissionSettings(cfg),
		Registerer:          reg,
		Recovery:            recovery,
	})
	if err != nil {
		return err
	}
	if a.rpcLn, err = net.Listen("tcp", cfg.Server.Addr); err != nil {
		return fmt.Errorf("server.addr: %w", err)
	}
	transport := handler.Transport{MaxRequestBytes: cfg.Server.MaxRequestBytes, DrainTimeout: cfg.Server.DrainTimeout, Logger: a.log}
	opts := append(handler.ServerOptions(transport),
		server.WithListener(a.rpcLn),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "putallkv"}),
		server.WithExitWaitTime(cfg.Server.ShutdownTimeout),
		server.WithExitSignal(func() <-chan error { return a.rpcStop }),
		server.WithConnectionLimiter(limiter.NewConnectionLimiter(cfg.Server.MaxConnections)),
	)
	a.rpc = kvservice.NewServer(handler.New(a.svc, a.log), append(opts, a.rpcSecurity(transport)...)...)
	go func() { a.rpcDone <- a.rpc.Run() }()
	return nil
}

// readyTimeout bounds one readiness check of the admin port's /readyz, as the gateway bounds
// its own.
const readyTimeout = 2 * time.Second

// storeReady is /readyz of a server: ready unless the write-ahead log is failing.
func (a *app) storeReady(context.Context) error {
	if a.durable != nil {
		return a.durable.Err()
	}
	return nil
}

// upstreamReady is /readyz of a gateway tier: an upstream answers a read (any answer but
// UNAVAILABLE, NOT_FOUND included, means it is there).
func (a *app) upstreamReady(ctx context.Context) error {
	_, err := a.upstream.Get(ctx, &kv.GetRequest{Key: "putallkv/readyz"})
	if errors.Is(err, kvclient.ErrUnavailable) {
		return err
	}
	return nil
}

// openStore opens the engine: memory only, or durable in store.data_dir after recovering it.
// It returns what recovery found of the service's idempotency records.
func (a *app) openStore(reg prometheus.Registerer) (*service.Recovery, error) {
	cfg := a.cfg
	opts := store.Options{Shards: cfg.Store.Shards, SweepInterval: cfg.Store.SweepInterval, MaxBytes: int64(cfg.Store.MaxBytes)}
	if cfg.Store.DataDir == "" {
		m, err := store.NewMemory(opts)
		if err != nil {
			return nil, err
		}
		a.engine = m
		return nil, nil
	}
	dm, err := newDurabilityMetrics(reg)
	if err != nil {
		return nil, err
	}
	sync := map[string]wal.SyncPolicy{"always": wal.SyncAlways, "interval": wal.SyncInterval, "none": wal.SyncNone}[cfg.WAL.Fsync]
	recovery := service.NewRecovery()
	d, err := store.OpenDurable(store.DurableOptions{
		Options: opts,
		Dir:     cfg.Store.DataDir,
		WAL: wal.Options{Sync: sync, SyncInterval: cfg.WAL.FsyncInterval, SegmentBytes: int64(cfg.WAL.SegmentBytes),
			Logger: a.log, Observer: dm},
		SnapshotBytes: int64(cfg.WAL.SnapshotBytes),
		Recovered:     recovery.Add,
		SnapshotTags:  func() [][]byte { return a.svc.SnapshotTags() },
		Observer:      dm,
	})
	if corrupt, ok := errors.AsType[*wal.CorruptionError](err); ok {
		return nil, fmt.Errorf("store.data_dir: the write-ahead log is damaged (%v); "+
			"`putallctl wal check %s` shows what is wrong, `putallctl wal repair %s` moves the damage aside (undoably; see the README, Operations: the data directory)",
			corrupt, cfg.Store.DataDir, cfg.Store.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("store.data_dir: %w", err)
	}
	a.engine, a.durable = d, d
	st := d.Stats()
	a.log.Info("store recovered", "dir", cfg.Store.DataDir, "keys", st.Keys, "revision", st.Revision, "fsync", cfg.WAL.Fsync,
		"bytes", st.Bytes, "max_bytes", st.MaxBytes)
	if st.MaxBytes > 0 && st.Bytes > st.MaxBytes {
		a.log.Warn("the store holds more than store.max_bytes: writes that add bytes are refused until deletes or expiry free room",
			"bytes", st.Bytes, "max_bytes", st.MaxBytes)
	}
	return recovery, nil
}

// serveSnapshot is the admin command POST /admin/snapshot: take a snapshot now.
func (a *app) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if a.durable == nil {
		http.Error(w, "memory-only store (store.data_dir is empty): nothing to snapshot\n", http.StatusConflict)
		return
	}
	start := time.Now()
	if err := a.durable.Snapshot(r.Context()); err != nil {
		a.log.Error("snapshot failed", "err", err)
		http.Error(w, "snapshot failed; the server log has the cause\n", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "snapshot taken in %s\n", time.Since(start).Round(time.Millisecond))
}

func admissionSettings(cfg *config.Config) service.AdmissionSettings {
	l := cfg.Limiter
	return service.AdmissionSettings{Rate: float64(l.Rate), Burst: l.Burst, MaxWait: l.MaxWait, MaxChunk: l.MaxChunk}
}

// reload applies the parts of cfg that can change while serving (the limiter section of a
// server) and names the changed keys that need a restart.
func (a *app) reload(cfg *config.Config) {
	changed := config.Changed(a.cfg, cfg)
	if a.svc != nil { // a gateway tier admits nothing itself
		a.svc.SetAdmission(admissionSettings(cfg))
	}
	a.cfg.Limiter = cfg.Limiter
	a.log.Info("configuration reloaded", "changed", changed, "limiter.rate", cfg.Limiter.Rate,
		"limiter.burst", cfg.Limiter.Burst, "limiter.max_wait", cfg.Limiter.MaxWait.String(),
		"limiter.max_chunk", cfg.Limiter.MaxChunk)
	if restart := config.Changed(a.cfg, cfg); len(restart) > 0 {
		a.log.Warn("configuration changes that take effect only after a restart", "keys", restart)
	}
}

// rpcAddr is the address the RPC server listens on ("" for a gateway tier).
func (a *app) rpcAddr() string {
	if a.rpcLn == nil {
		return ""
	}
	return a.rpcLn.Addr().String()
}

// gatewayAddr is the address the HTTP gateway listens on ("" when it is off).
func (a *app) gatewayAddr() string {
	if a.gw == nil {
		return ""
	}
	return a.gw.Addr().String()
}

// adminAddr is the address of /metrics and /debug/pprof/.
func (a *app) adminAddr() string { return a.admin.Addr().String() }

// shutdown stops taking calls, lets in-flight calls finish (up to server.shutdown_timeout),
// then stops the rest.
func (a *app) shutdown(ctx context.Context) error {
	var errs []error
	if a.gw != nil {
		errs = append(errs, a.gw.Shutdown(ctx))
	}
	if a.rpc != nil {
		a.drainRPC()
		a.rpcStop <- nil
		select {
		case err := <-a.rpcDone:
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("rpc server: %w", ctx.Err()))
		}
	}
	return errors.Join(append(errs, a.close())...)
}

// close stops the parts that have no in-flight work to wait for.
func (a *app) close() error {
	var errs []error
	if a.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs = append(errs, a.admin.Shutdown(ctx))
	}
	if a.gw != nil { // a no-op after shutdown, which stopped it first
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs = append(errs, a.gw.Shutdown(ctx))
	}
	if a.rpc == nil && a.rpcLn != nil {
		errs = append(errs, a.rpcLn.Close())
	}
	if a.upstream != nil {
		errs = append(errs, a.upstream.Close())
	}
	if a.engine != nil {
		errs = append(errs, a.engine.Close())
	}
	return errors.Join(errs...)
}
