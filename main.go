// Command putallkv is the putallkv server: the KVService over Kitex, backed by the sharded
// store (in memory, or durable with store.data_dir), with the HTTP gateway beside it and
// Prometheus metrics and pprof on an admin address. `putallkv gateway -upstream HOST:PORT,...`
// runs the HTTP gateway alone, as a separate tier in front of RPC servers. Configuration comes
// from the embedded conf/putallkv.yaml, a -conf file, PUTALLKV_<SECTION>_<KEY> variables and
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"putallkv/conf"
	"putallkv/pkg/config"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run starts the server and serves until SIGINT or SIGTERM, then shuts down gracefully; SIGHUP
// reloads the configuration (the limiter section applies at once). It returns the process exit
// code.
func run(args []string) int {
	tier := len(args) > 0 && args[0] == "gateway"
	if tier {
		args = args[1:]
	}
	cfg, err := config.FromArgs(conf.Default, args, os.Environ())
	if err == nil && tier && cfg.Gateway.Upstream == "" {
		err = errors.New("config: gateway.upstream: `putallkv gateway` needs the RPC servers to front (-upstream HOST:PORT[,...])")
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "putallkv: %v\n", err)
		return 2
	}
	log := cfg.Logger(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := startApp(cfg, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-reload:
			newCfg, err := config.FromArgs(conf.Default, args, os.Environ())
			if err != nil {
				log.Error("configuration reload refused; keeping the running configuration", "err", err)
				continue
			}
			a.reload(newCfg)
		}
	}
	log.Info("shutting down", "grace", cfg.Server.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout+time.Second)
	defer cancel()
	if err := a.shutdown(shutdownCtx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
