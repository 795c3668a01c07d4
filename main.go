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
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"putallkv/conf"
	"putallkv/pkg/buildinfo"
	"putallkv/pkg/config"
	"putallkv/pkg/logbridge"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run starts the server and serves until SIGINT or SIGTERM, then shuts down gracefully; SIGHUP
// reloads the token file, the certificates and the configuration (the limiter section applies
// at once). It returns the process exit code.
func run(args []string) int {
	tier := len(args) > 0 && args[0] == "gateway"
	if tier {
		args = args[1:]
	}
	cfg, err := config.FromArgs(conf.Default, args, os.Environ())
	if err == nil && tier && cfg.Gateway.Upstream == "" {
		err = errors.New("config: gateway.upstream: `putallkv gateway` needs the RPC servers to front (-upstream HOST:PORT[,...])")
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return printUsage(os.Stdout)
	case errors.Is(err, config.ErrVersion):
		fmt.Println("putallkv", buildinfo.Get())
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "putallkv: %v\n", err)
		return 2
	}
	log := cfg.Logger(os.Stderr)
	logbridge.Install(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Caught from before start-up, so a SIGHUP sent once the server says it serves cannot
	// meet SIGHUP's default action, which ends the process.
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	a, err := startApp(cfg, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-reload:
			a.reloadSecurity()
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

// usage is the synopsis -h prints before the flags and configuration keys.
const usage = `usage: putallkv [flags]
       serve the KVService over RPC (server.addr), the HTTP gateway (gateway.addr), and
       /metrics, /healthz, /readyz, /debug/pprof/ and admin commands (admin.addr)
   or: putallkv gateway -upstream HOST:PORT[,HOST:PORT...] [flags]
       run the HTTP gateway alone, a tier in front of those RPC servers

`

// printUsage writes the help of -h to w and returns the exit code.
func printUsage(w io.Writer) int {
	fmt.Fprint(w, usage)
	if err := config.PrintUsage(w, conf.Default); err != nil {
		fmt.Fprintf(os.Stderr, "putallkv: %v\n", err)
		return 1
	}
	return 0
}
