// Command putallkv is the putallkv server: the KVService over Kitex, backed by the sharded
// store (in memory, or durable with store.data_dir), with the HTTP gateway beside it and
// Prometheus metrics and pprof on an admin address. `putallkv gateway -upstream HOST:PORT,...`
// runs the HTTP gateway alone, as a separate tier in front of RPC servers. Configuration comes
// from the embedded conf/putallkv.yaml, a -conf file, PUTALLKV_<SECTION>_<KEY> variables and
// flags.
//
// This file reads the command line only; the process's wiring is package internal/server.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/putallkv/putallkv/conf"
	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/pkg/buildinfo"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/logbridge"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run reads the configuration from args and the environment and runs the server
// (internal/server.Run: until SIGINT or SIGTERM, reloading on SIGHUP). It returns the process
// exit code: 2 for a bad command line or configuration, 1 when the server fails.
func run(args []string) int {
	tier := len(args) > 0 && args[0] == "gateway"
	if tier {
		args = args[1:]
	}
	load := func() (*config.Config, error) { return config.FromArgs(conf.Default, args, os.Environ()) }
	cfg, err := load()
	check := errors.Is(err, config.ErrCheckConfig)
	if check {
		err = nil
	}
	if err == nil && tier && cfg.Gateway.Upstream == "" {
		err = errors.New("config: gateway.upstream: `putallkv gateway` needs the RPC servers to front (-upstream HOST:PORT[,...], dns://HOST:PORT or etcd://SERVICE)")
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
	if check {
		return checkConfig(cfg, tier)
	}
	log := cfg.Logger(os.Stderr)
	logbridge.Install(log)
	if server.Run(cfg, log, load) != nil {
		return 1
	}
	return 0
}

// checkConfig finishes -check-config: it runs the checks start-up makes before opening a port
// or the store (internal/server.Check) and prints one line, the error on stderr (exit 2) or,
// on stdout, OK with what the node would serve, for scripts to read (exit 0):
//
//	putallkv: configuration OK: role=server rpc=127.0.0.1:8888 gateway=127.0.0.1:8080 admin=http://127.0.0.1:9100 store=durable data_dir=data
func checkConfig(cfg *config.Config, tier bool) int {
	if err := server.Check(cfg, slog.New(slog.DiscardHandler)); err != nil {
		fmt.Fprintf(os.Stderr, "putallkv: configuration refused: %v\n", err)
		return 2
	}
	scheme := "http"
	if cfg.TLS.Serves(cfg.TLS.Admin) {
		scheme = "https"
	}
	admin := scheme + "://" + cfg.Admin.Addr
	if tier {
		fmt.Printf("putallkv: configuration OK: role=gateway gateway=%s admin=%s upstream=%s\n", cfg.Gateway.Addr, admin, cfg.Gateway.Upstream)
		return 0
	}
	fmt.Printf("putallkv: configuration OK: role=server rpc=%s gateway=%s admin=%s store=%s data_dir=%s\n",
		cfg.Server.Addr, cfg.Gateway.Addr, admin, cfg.Store.EngineName(), cfg.Store.DataDir)
	return 0
}

// usage is the synopsis -h prints before the flags and configuration keys.
const usage = `usage: putallkv [flags]
       serve the KVService over RPC (server.addr), the HTTP gateway (gateway.addr), and
       /metrics, /healthz, /readyz, /debug/pprof/ and admin commands (admin.addr)
   or: putallkv gateway -upstream HOST:PORT[,HOST:PORT...]|dns://HOST:PORT|etcd://SERVICE [flags]
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
