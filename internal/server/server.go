// Package server wires one putallkv process: the store (in memory, or durable in
// store.data_dir), the service over it, the Kitex RPC server, the HTTP gateway and the admin
// endpoint, from a validated configuration; or, as a separate gateway tier, the gateway over a
// pooled client of upstream RPC servers. main parses the command line and calls Run; the
// end-to-end tests call Start and Shutdown and read the addresses. Nothing under pkg/ or biz/
// imports it: the wiring sits on top of everything else.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cloudwego/kitex/pkg/limiter"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/stats"
	kitexserver "github.com/cloudwego/kitex/server"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/putallkv/putallkv/biz/gateway"
	"github.com/putallkv/putallkv/biz/service"
	"github.com/putallkv/putallkv/handler"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/buildinfo"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/hotkey"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/kvclient/etcdresolver"
	"github.com/putallkv/putallkv/pkg/metrics"
	"github.com/putallkv/putallkv/pkg/redisstore"
	"github.com/putallkv/putallkv/pkg/rpcguard"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/tlsconf"
	"github.com/putallkv/putallkv/pkg/wal"
)

// Server is one running putallkv process: the store, the Kitex RPC server, the HTTP gateway
// and the admin endpoint; or, as a separate gateway tier, the gateway over a pooled client of
// upstream RPC servers.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	engine  store.Engine
	durable *store.Durable // the engine, when store.data_dir is set
	svc     *service.Service
	hot     *hotkey.Detector // nil: hot-key detection off, or a gateway tier
	rpcLn   net.Listener
	rpc     kitexserver.Server
	rpcStop chan error // a value here makes the Kitex server stop gracefully
	// rpcStopped is set once the Kitex server was told to stop.
	rpcStopped bool
	rpcDone    chan error // receives Run's result
	gw         *gateway.Gateway
	upstream   *kvclient.Client // the gateway tier's client
	// upstreamEtcd finds the gateway tier's servers when gateway.upstream is etcd://.
	upstreamEtcd *etcdresolver.Resolver
	// registration is the server's key in etcd (discovery.etcd_endpoints), nil once deregistered.
	registration *etcdresolver.Registration
	admin        *metrics.AdminServer
	sec          security
	// tracerProvider makes the spans (tracing.enabled); nil when tracing is off.
	tracerProvider *sdktrace.TracerProvider
}

// Start builds and starts every part from cfg, which must be valid (config.Load validates); on
// error, whatever started is stopped. With gateway.upstream set it starts a gateway tier;
// otherwise a server with its own store. It logs "putallkv serving" with the addresses once
// every listener is open. opts are test hooks (WithSpanExporter).
func Start(cfg *config.Config, log *slog.Logger, opts ...Option) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: log, rpcStop: make(chan error, 1), rpcDone: make(chan error, 1)}
	defer func() {
		if err != nil { // a part that failed after the RPC server started (registration, say)
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
			defer cancel()
			_ = s.stopRPC(ctx)
			_ = s.close()
		}
	}()
	if err := s.preflight(); err != nil {
		return nil, err
	}
	var o startOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := s.startTracing(o); err != nil {
		return nil, err
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(buildinfo.Get().Collector(metrics.Namespace))
	var api kv.KVService
	var ready func(context.Context) error
	if cfg.Gateway.Upstream != "" {
		if err := s.dialUpstream(); err != nil {
			return nil, err
		}
		api, ready = s.upstream, s.upstreamReady
	} else {
		if err := s.startService(reg); err != nil {
			return nil, err
		}
		api, ready = handler.New(s.svc, log), s.storeReady
	}
	if cfg.Gateway.Addr != "" {
		s.gw = gateway.New(api, gateway.Options{MaxBodyBytes: cfg.Gateway.MaxBodyBytes, Registerer: reg, Logger: log, Ready: ready,
			AccessLog: gateway.AccessLog(cfg.Gateway.AccessLog), Auth: s.sec.auth, TLS: s.tlsFor(cfg.TLS.Gateway),
			Limits: gatewayLimits(cfg.Gateway), AllowedHosts: cfg.Gateway.Hosts(), AllowedOrigins: cfg.Gateway.Origins(),
			Tracer: hertzTracer(reg), TracerProvider: s.tracer()})
		if err := s.gw.Start(cfg.Gateway.Addr); err != nil {
			s.gw = nil
			return nil, fmt.Errorf("gateway.addr: %w", err)
		}
	}
	routes := append(metrics.HealthRoutes(ready, readyTimeout),
		metrics.Route{Pattern: "POST /admin/snapshot", Handler: http.HandlerFunc(s.serveSnapshot)})
	if s.hot != nil {
		routes = append(routes, metrics.Route{Pattern: "GET /admin/hotkeys", Handler: s.hot})
	}
	if s.admin, err = metrics.StartAdmin(cfg.Admin.Addr, reg, log, s.adminSecurity(), adminLimits(cfg.Admin), metrics.Routes(routes)); err != nil {
		return nil, fmt.Errorf("admin.addr: %w", err)
	}
	if err := s.register(); err != nil {
		return nil, err
	}
	log.Info("putallkv serving", "rpc", s.RPCAddr(), "admin", s.AdminAddr(), "gateway", s.GatewayAddr(),
		"upstream", cfg.Gateway.Upstream)
	return s, nil
}

// Check runs the checks Start makes before it opens a port or the store, for -check-config:
// the token file and the certificates load, the connection caps fit the open-file limit, and a
// gateway tier's upstream CA loads. cfg must be valid (config.Load validates); log receives
// what Start would log of these checks.
func Check(cfg *config.Config, log *slog.Logger) error {
	s := &Server{cfg: cfg, log: log}
	if err := s.preflight(); err != nil {
		return err
	}
	if cfg.Gateway.Upstream != "" {
		if _, err := s.upstreamOptions(); err != nil {
			return err
		}
	}
	return nil
}

// preflight loads the security files and checks the open-file limit: what start-up checks
// before it opens anything.
func (s *Server) preflight() error {
	if err := s.loadSecurity(); err != nil {
		return err
	}
	return checkFDLimit(s.cfg, s.log)
}

// dialUpstream makes the gateway tier's client of gateway.upstream: a fixed list of servers,
// every address of a DNS name, or the servers registered in etcd, the last two looked up
// again every discovery.refresh_interval.
func (s *Server) dialUpstream() (err error) {
	cfg := s.cfg
	opts, err := s.upstreamOptions()
	if err != nil {
		return err
	}
	opts = append(opts, kvclient.WithRefreshInterval(cfg.Discovery.RefreshInterval))
	if tp := s.tracer(); tp != nil {
		opts = append(opts, kvclient.WithTracerProvider(tp))
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("gateway.upstream: %w", err)
		}
	}()
	if hostPort, ok := cfg.Gateway.UpstreamDNS(); ok {
		r, err := kvclient.NewDNSResolver(hostPort, nil)
		if err != nil {
			return err
		}
		s.upstream, err = kvclient.NewWithResolver(r, opts...)
		return err
	}
	if service, ok := cfg.Gateway.UpstreamEtcd(); ok {
		ecfg, err := s.etcdConfig(service)
		if err != nil {
			return err
		}
		if s.upstreamEtcd, err = etcdresolver.New(ecfg); err != nil {
			return err
		}
		s.upstream, err = kvclient.NewWithResolver(s.upstreamEtcd, opts...)
		return err
	}
	s.upstream, err = kvclient.New(cfg.Gateway.Upstreams(), opts...)
	return err
}

// etcdConfig is where discovery.etcd_endpoints' registry is, for service, and who to be there.
func (s *Server) etcdConfig(service string) (etcdresolver.Config, error) {
	d := s.cfg.Discovery
	cfg := etcdresolver.Config{Endpoints: d.EtcdEndpointList(), Service: service, Logger: s.log, Username: d.EtcdUsername}
	if d.EtcdPasswordFile != "" {
		b, err := os.ReadFile(d.EtcdPasswordFile)
		if err != nil {
			return cfg, fmt.Errorf("discovery.etcd_password_file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
	}
	return cfg, nil
}

// register registers a server in etcd when discovery.etcd_endpoints is set: its
// discovery.advertise_addr, else the address its RPC server listens on.
func (s *Server) register() error {
	d := s.cfg.Discovery
	if s.rpcLn == nil || len(d.EtcdEndpointList()) == 0 {
		return nil
	}
	addr := d.AdvertiseAddr
	if addr == "" {
		addr = s.RPCAddr()
	}
	ecfg, err := s.etcdConfig(d.Service)
	if err != nil {
		return err
	}
	reg, err := etcdresolver.Register(ecfg, addr, d.TTL)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	s.registration = reg
	s.log.Info("registered in etcd", "key", reg.Key(), "ttl", d.TTL.String())
	return nil
}

// deregister removes the server's key from etcd, if it has one, so that clients stop
// sending it calls.
func (s *Server) deregister(ctx context.Context) error {
	if s.registration == nil {
		return nil
	}
	err := s.registration.Close(ctx)
	s.registration = nil
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	s.log.Info("deregistered from etcd")
	return nil
}

// startService opens the store, builds the service over it and starts its Kitex server.
func (s *Server) startService(reg *prometheus.Registry) error {
	cfg := s.cfg
	recovery, err := s.openStore(reg)
	if err != nil {
		return err
	}
	if s.hot, err = hotKeys(cfg.HotKeys, reg); err != nil {
		return err
	}
	s.svc, err = service.New(s.engine, service.Options{
		Limits: service.Limits{
			MaxKeyBytes:     cfg.Limits.MaxKeyBytes,
			MaxValueBytes:   cfg.Limits.MaxValueBytes,
			MaxBatchEntries: cfg.Limits.MaxBatchEntries,
			MaxScanEntries:  cfg.Limits.MaxScanEntries,
			MaxScanBytes:    cfg.Limits.MaxScanBytes,
		},
		IdempotencyWindow:   cfg.Idempotency.Window,
		IdempotencyMaxBytes: int64(cfg.Idempotency.MaxBytes),
		Admission:           admissionSettings(cfg),
		Registerer:          reg,
		Recovery:            recovery,
		Writes:              observer(s.hot),
	})
	if err != nil {
		return err
	}
	if s.rpcLn, err = net.Listen("tcp", cfg.Server.Addr); err != nil {
		return fmt.Errorf("server.addr: %w", err)
	}
	refusals, err := rpcguard.NewMetrics(reg)
	if err != nil {
		return err
	}
	conns := limiter.NewConnectionLimiter(cfg.Server.MaxConnections)
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Name: "rpc_connections",
		Help: "RPC connections open now (at most server.max_connections)."},
		func() float64 { _, n := conns.Status(context.Background()); return float64(n) })); err != nil {
		return err
	}
	streams := handler.NewStreams(handler.StreamOptions(cfg.Server.MaxRequestBytes))
	if err := registerStreams(reg, streams); err != nil {
		return err
	}
	transport := handler.Transport{MaxRequestBytes: cfg.Server.MaxRequestBytes, DrainTimeout: cfg.Server.DrainTimeout,
		Logger: s.log, Refusals: refusals, TracerProvider: s.tracer(), Streams: streams}
	opts := append(handler.ServerOptions(transport),
		kitexserver.WithListener(s.rpcLn),
		kitexserver.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "putallkv"}),
		kitexserver.WithExitWaitTime(cfg.Server.ShutdownTimeout),
		kitexserver.WithExitSignal(func() <-chan error { return s.rpcStop }),
		kitexserver.WithConnectionLimiter(conns),
		// The standard series need only each call's start and end: the base level records no more.
		kitexserver.WithTracer(kitexTracer(reg)), kitexserver.WithStatsLevel(stats.LevelBase),
	)
	s.rpc = kvservice.NewServer(handler.New(s.svc, s.log), append(opts, s.rpcSecurity(transport)...)...)
	go func() { s.rpcDone <- s.rpc.Run() }()
	return nil
}

// registerStreams exports what the Load streams' connections hold (see rpcguard.Streams).
func registerStreams(reg prometheus.Registerer, s *rpcguard.Streams) error {
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Name: "stream_inflight_bytes",
			Help: "Bytes of stream messages read and not yet taken by their stream (bounded per connection)."},
			func() float64 { return float64(s.Inflight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Name: "stream_inflight_bytes_max",
			Help: "The highest stream_inflight_bytes has been since the server started."},
			func() float64 { return float64(s.Peak()) }),
	} {
		if err := reg.Register(g); err != nil {
			return err
		}
	}
	return nil
}

// readyTimeout bounds one readiness check of the admin port's /readyz, as the gateway bounds
// its own.
const readyTimeout = 2 * time.Second

// storeReady is /readyz of a server: ready unless the write-ahead log is failing.
func (s *Server) storeReady(context.Context) error {
	if s.durable != nil {
		return s.durable.Err()
	}
	return nil
}

// upstreamReady is /readyz of a gateway tier: an upstream answers a read (any answer but
// UNAVAILABLE, NOT_FOUND included, means it is there).
func (s *Server) upstreamReady(ctx context.Context) error {
	_, err := s.upstream.Get(ctx, &kv.GetRequest{Key: "putallkv/readyz"})
	if errors.Is(err, kvclient.ErrUnavailable) {
		return err
	}
	return nil
}

// openStore opens the engine store.engine names: memory only, durable in store.data_dir after
// recovering it, or over the Redis Cluster of the redis section. It returns what recovery found
// of the service's idempotency records.
func (s *Server) openStore(reg prometheus.Registerer) (*service.Recovery, error) {
	cfg := s.cfg
	if cfg.Store.EngineName() == config.EngineRedisCluster {
		var e *redisstore.Engine
		rm, err := metrics.NewRedisCluster(reg, func() int { return e.Nodes() })
		if err != nil {
			return nil, err
		}
		var tlsCfg *tls.Config
		if cfg.Redis.TLS {
			if tlsCfg, err = tlsconf.Client(tlsconf.Files{Cert: cfg.Redis.CertFile, Key: cfg.Redis.KeyFile, CA: cfg.Redis.CAFile}); err != nil {
				return nil, fmt.Errorf("redis.tls: %w", err)
			}
		}
		e, err = redisstore.Open(redisstore.Options{Addrs: cfg.Redis.AddrList(), ReplicasAck: cfg.Redis.ReplicasAck,
			AckTimeout: cfg.Redis.AckTimeout, Username: cfg.Redis.Username, Password: cfg.Redis.Password, TLS: tlsCfg,
			DialTimeout: cfg.Redis.DialTimeout, BlockingPoolSize: cfg.Redis.BlockingPoolSize, Module: cfg.Redis.Module, Observer: rm})
		if err != nil {
			return nil, fmt.Errorf("redis.addrs: %w", err)
		}
		s.engine = e
		s.log.Info("store on redis cluster", "addrs", cfg.Redis.Addrs, "replicas_ack", cfg.Redis.ReplicasAck,
			"ack_timeout", cfg.Redis.AckTimeout)
		return nil, nil
	}
	opts := store.Options{Shards: cfg.Store.Shards, SweepInterval: cfg.Store.SweepInterval, MaxBytes: int64(cfg.Store.MaxBytes)}
	if cfg.Store.EngineName() == config.EngineMemory {
		m, err := store.NewMemory(opts)
		if err != nil {
			return nil, err
		}
		s.engine = m
		return nil, nil
	}
	sync, err := wal.ParseSyncPolicy(cfg.WAL.Fsync)
	if err != nil {
		return nil, fmt.Errorf("wal.fsync: %w", err)
	}
	dm, err := metrics.NewDurability(reg)
	if err != nil {
		return nil, err
	}
	recovery := service.NewRecovery()
	d, err := store.OpenDurable(store.DurableOptions{
		Options: opts,
		Dir:     cfg.Store.DataDir,
		WAL: wal.Options{Sync: sync, SyncInterval: cfg.WAL.FsyncInterval, SegmentBytes: int64(cfg.WAL.SegmentBytes),
			Logger: s.log, Observer: dm},
		SnapshotBytes: int64(cfg.WAL.SnapshotBytes),
		Recovered:     recovery.Add,
		SnapshotTags:  func() [][]byte { return s.svc.SnapshotTags() },
		Observer:      dm,
	})
	if corrupt, ok := errors.AsType[*wal.CorruptionError](err); ok {
		return nil, fmt.Errorf("store.data_dir: the write-ahead log is damaged (%v); "+
			"`putallctl wal check %s` shows what is wrong, `putallctl wal repair %s` moves the damage aside (undoably; see docs/operations.md, The data directory)",
			corrupt, cfg.Store.DataDir, cfg.Store.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("store.data_dir: %w", err)
	}
	s.engine, s.durable = d, d
	if err := metrics.WatchJournal(reg, d.Err); err != nil {
		return nil, err
	}
	st := d.Stats()
	s.log.Info("store recovered", "dir", cfg.Store.DataDir, "keys", st.Keys, "revision", st.Revision, "fsync", cfg.WAL.Fsync,
		"bytes", st.Bytes, "max_bytes", st.MaxBytes)
	if st.MaxBytes > 0 && st.Bytes > st.MaxBytes {
		s.log.Warn("the store holds more than store.max_bytes: writes that add bytes are refused until deletes or expiry free room",
			"bytes", st.Bytes, "max_bytes", st.MaxBytes)
	}
	return recovery, nil
}

// serveSnapshot is the admin command POST /admin/snapshot: take a snapshot now.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if s.durable == nil {
		http.Error(w, fmt.Sprintf("the %s engine keeps no snapshots (only durable does, with store.data_dir)\n", s.cfg.Store.EngineName()),
			http.StatusConflict)
		return
	}
	start := time.Now()
	if err := s.durable.Snapshot(r.Context()); err != nil {
		s.log.Error("snapshot failed", "err", err)
		http.Error(w, "snapshot failed; the server log has the cause\n", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "snapshot taken in %s\n", time.Since(start).Round(time.Millisecond))
}

// admissionSettings are the service's admission settings from the limiter section.
func admissionSettings(cfg *config.Config) service.AdmissionSettings {
	l := cfg.Limiter
	return service.AdmissionSettings{Rate: float64(l.Rate), Burst: l.Burst, MaxWait: l.MaxWait, MaxChunk: l.MaxChunk}
}

// apply applies the parts of cfg that can change while serving (the limiter section of a
// server) and names the changed keys that need a restart.
func (s *Server) apply(cfg *config.Config) {
	changed := config.Changed(s.cfg, cfg)
	if s.svc != nil { // a gateway tier admits nothing itself
		s.svc.SetAdmission(admissionSettings(cfg))
	}
	s.cfg.Limiter = cfg.Limiter
	s.log.Info("configuration reloaded", "changed", changed, "limiter.rate", cfg.Limiter.Rate,
		"limiter.burst", cfg.Limiter.Burst, "limiter.max_wait", cfg.Limiter.MaxWait.String(),
		"limiter.max_chunk", cfg.Limiter.MaxChunk)
	if restart := config.Changed(s.cfg, cfg); len(restart) > 0 {
		s.log.Warn("configuration changes that take effect only after a restart", "keys", restart)
	}
}

// RPCAddr is the address the RPC server listens on ("" for a gateway tier): with server.addr
// on port 0, the port the system chose.
func (s *Server) RPCAddr() string {
	if s.rpcLn == nil {
		return ""
	}
	return s.rpcLn.Addr().String()
}

// GatewayAddr is the address the HTTP gateway listens on ("" when it is off).
func (s *Server) GatewayAddr() string {
	if s.gw == nil {
		return ""
	}
	return s.gw.Addr().String()
}

// AdminAddr is the address of /metrics, the probes, /debug/pprof/ and the admin commands.
func (s *Server) AdminAddr() string { return s.admin.Addr().String() }

// Engine is the store the server serves from (nil for a gateway tier). It is exported for the
// end-to-end tests, which check what the store holds beside what the API answers.
func (s *Server) Engine() store.Engine { return s.engine }

// Service is the service behind the RPC server (nil for a gateway tier). It is exported for the
// end-to-end tests, which set admission at run time to what the configuration cannot express
// (a fraction of a key per second) and write below the transport.
func (s *Server) Service() *service.Service { return s.svc }

// Shutdown stops taking calls, lets in-flight calls finish (up to server.shutdown_timeout),
// then stops the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	// First out of the registry, so that clients stop choosing this server while it drains.
	errs := []error{s.deregister(ctx)}
	if s.gw != nil {
		errs = append(errs, s.gw.Shutdown(ctx))
	}
	errs = append(errs, s.stopRPC(ctx))
	return errors.Join(append(errs, s.close())...)
}

// stopRPC stops the Kitex server gracefully, if it runs, and waits for it within ctx.
func (s *Server) stopRPC(ctx context.Context) error {
	if s.rpc == nil || s.rpcStopped {
		return nil
	}
	s.rpcStopped = true
	s.svc.StopLoads()
	s.drainRPC()
	s.rpcStop <- nil
	select {
	case err := <-s.rpcDone:
		return err
	case <-ctx.Done():
		return fmt.Errorf("rpc server: %w", ctx.Err())
	}
}

// close stops the parts that have no in-flight work to wait for.
func (s *Server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	errs := []error{s.deregister(ctx)}
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs = append(errs, s.admin.Shutdown(ctx))
	}
	if s.gw != nil { // a no-op after shutdown, which stopped it first
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs = append(errs, s.gw.Shutdown(ctx))
	}
	if s.rpc == nil && s.rpcLn != nil {
		errs = append(errs, s.rpcLn.Close())
	}
	if s.upstream != nil {
		errs = append(errs, s.upstream.Close())
	}
	if s.upstreamEtcd != nil {
		errs = append(errs, s.upstreamEtcd.Close())
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close())
	}
	s.stopTracing()
	return errors.Join(errs...)
}
