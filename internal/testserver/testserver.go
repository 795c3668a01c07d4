// Package testserver runs the real putallkv server in-process for tests outside the wiring
// (test/e2e, test/ops, test/thrift, test/cluster, the SDK's tests): one configuration on
// ephemeral loopback ports and one start that stops the server when the test ends.
package testserver

import (
	"log/slog"
	"testing"
	"time"

	"github.com/putallkv/putallkv/conf"
	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// Config is the embedded default configuration with every listener on an ephemeral loopback
// port and a short graceful shutdown, as edit then changes it (nil: no change), validated.
func Config(t testing.TB, edit func(*config.Config)) *config.Config {
	t.Helper()
	cfg, err := config.Load(conf.Default, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Addr, cfg.Admin.Addr, cfg.Gateway.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = 5 * time.Second
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Start runs the real server (or gateway tier) from cfg in-process, with the test hooks opts,
// logging to log (nil: nowhere); it shuts down gracefully when t ends, failing t if that fails.
func Start(t testing.TB, cfg *config.Config, log *slog.Logger, opts ...server.Option) *server.Server {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := server.Start(cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testnet.Stop(t, s) })
	return s
}

// Client is an SDK client of the server at addr, with opts, closed when t ends.
func Client(t testing.TB, addr string, opts ...kvclient.Option) *kvclient.Client {
	t.Helper()
	c, err := kvclient.New([]string{addr}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
