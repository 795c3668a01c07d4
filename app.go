package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	"putallkv/pkg/rpclimit"

	"putallkv/biz/service"
	"putallkv/handler"
	"putallkv/kitex_gen/kv/kvservice"
	"putallkv/pkg/config"
	"putallkv/pkg/metrics"
	"putallkv/pkg/store"
)

// app is one running putallkv server: the store, the Kitex RPC server and the admin endpoint.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	engine  *store.Memory
	svc     *service.Service
	rpcLn   net.Listener
	rpc     server.Server
	rpcStop chan error // a value here makes the Kitex server stop gracefully
	rpcDone chan error // receives Run's result
	admin   *metrics.AdminServer
}

// startApp builds and starts every part from cfg; on error, whatever started is stopped.
func startApp(cfg *config.Config, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, rpcStop: make(chan error, 1), rpcDone: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.engine, err = store.NewMemory(store.Options{Shards: cfg.Store.Shards, SweepInterval: cfg.Store.SweepInterval})
	if err != nil {
		return nil, err
	}
	reg := metrics.NewRegistry()
	svc, err := service.New(a.engine, service.Options{
		Limits: service.Limits{
			MaxKeyBytes:     cfg.Limits.MaxKeyBytes,
			MaxValueBytes:   cfg.Limits.MaxValueBytes,
			MaxBatchEntries: cfg.Limits.MaxBatchEntries,
		},
		IdempotencyWindow:     cfg.Idempotency.Window,
		IdempotencyMaxRecords: cfg.Idempotency.MaxRecords,
		Admission:             admissionSettings(cfg),
		Registerer:            reg,
	})
	if err != nil {
		return nil, err
	}
	a.svc = svc
	if a.admin, err = metrics.StartAdmin(cfg.Admin.Addr, reg, log); err != nil {
		return nil, fmt.Errorf("admin.addr: %w", err)
	}
	if a.rpcLn, err = net.Listen("tcp", cfg.Server.Addr); err != nil {
		return nil, fmt.Errorf("server.addr: %w", err)
	}
	a.rpc = kvservice.NewServer(handler.New(svc, log),
		server.WithListener(a.rpcLn),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: "putallkv"}),
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
		server.WithEnableContextTimeout(true), // the caller's RPC timeout bounds waits for admission
		server.WithCodec(rpclimit.New(cfg.Server.MaxRequestBytes)),
		server.WithExitWaitTime(cfg.Server.ShutdownTimeout),
		server.WithExitSignal(func() <-chan error { return a.rpcStop }),
	)
	go func() { a.rpcDone <- a.rpc.Run() }()
	log.Info("putallkv serving", "rpc", a.rpcLn.Addr().String(), "admin", a.admin.Addr().String())
	return a, nil
}

func admissionSettings(cfg *config.Config) service.AdmissionSettings {
	l := cfg.Limiter
	return service.AdmissionSettings{Rate: float64(l.Rate), Burst: l.Burst, MaxWait: l.MaxWait, MaxChunk: l.MaxChunk}
}

// reload applies the parts of cfg that can change while serving (the limiter section) and
// says which other changes need a restart.
func (a *app) reload(cfg *config.Config) {
	a.svc.SetAdmission(admissionSettings(cfg))
	a.log.Info("configuration reloaded", "limiter.rate", cfg.Limiter.Rate, "limiter.burst", cfg.Limiter.Burst,
		"limiter.max_wait", cfg.Limiter.MaxWait.String(), "limiter.max_chunk", cfg.Limiter.MaxChunk)
	old := *a.cfg
	old.Limiter = cfg.Limiter
	if old != *cfg {
		a.log.Warn("configuration changes outside the limiter section take effect only after a restart")
	}
	a.cfg.Limiter = cfg.Limiter
}

// rpcAddr is the address the RPC server listens on.
func (a *app) rpcAddr() string { return a.rpcLn.Addr().String() }

// adminAddr is the address of /metrics and /debug/pprof/.
func (a *app) adminAddr() string { return a.admin.Addr().String() }

// shutdown stops taking calls, lets in-flight calls finish (up to server.shutdown_timeout),
// then stops the rest.
func (a *app) shutdown(ctx context.Context) error {
	a.rpcStop <- nil
	var err error
	select {
	case err = <-a.rpcDone:
	case <-ctx.Done():
		err = fmt.Errorf("rpc server: %w", ctx.Err())
	}
	return errors.Join(err, a.close())
}

// close stops the parts that have no in-flight work to wait for.
func (a *app) close() error {
	var errs []error
	if a.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs = append(errs, a.admin.Shutdown(ctx))
	}
	if a.rpc == nil && a.rpcLn != nil {
		errs = append(errs, a.rpcLn.Close())
	}
	if a.engine != nil {
		errs = append(errs, a.engine.Close())
	}
	return errors.Join(errs...)
}
