// Package thrift_test proves that clients built with the Apache Thrift tools, not Kitex, can
// use putallkv: Go code the Apache compiler generates from idl/kv.thrift (committed in gen/kv,
// checked current here) and the Python example in examples/python, each against the real
// server started in this process on a loopback port.
package thrift_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"putallkv/conf"
	"putallkv/internal/server"
	"putallkv/pkg/config"
	"putallkv/pkg/leakcheck"
	"putallkv/test/thrift/gen/kv"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// quiet is the servers' log, which no test reads.
var quiet = slog.New(slog.DiscardHandler)

// repoRoot is the repository's root directory, where idl/ and examples/ are.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no source path for this file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// debianTools installs Debian's thrift-compiler and python3-thrift once per test binary,
// when a tool is missing and the tests run as root (as in CI).
var debianTools struct {
	once sync.Once
	out  []byte
	err  error
}

// needTools makes sure the programs (looked up on PATH, or by absolute path) are there,
// installing the Debian packages pkgs if not. Without root to install them the test is
// skipped, saying what to install; as root a failed install fails the test.
func needTools(t *testing.T, programs []string, pkgs ...string) {
	t.Helper()
	missing := func() []string {
		var m []string
		for _, p := range programs {
			if _, err := exec.LookPath(p); err != nil {
				m = append(m, p)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs %v: install the Debian packages %v (apt-get install -y %v) or run the tests as root, which installs them", missing(), pkgs, pkgs)
	}
	debianTools.once.Do(func() {
		all := []string{"thrift-compiler", "python3-thrift"}
		cmd := exec.Command("sh", "-c", "apt-get update -qq && apt-get install -y -qq \"$@\"", "sh")
		cmd.Args = append(cmd.Args, all...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		debianTools.out, debianTools.err = cmd.CombinedOutput()
	})
	if debianTools.err != nil {
		t.Fatalf("apt-get install: %v\n%s", debianTools.err, debianTools.out)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("still missing %v after installing %v", m, pkgs)
	}
}

// testConfig is the embedded default configuration on ephemeral loopback ports, with limits
// small enough to reach.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Load(conf.Default, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Gateway.Addr = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Limits = config.LimitsConfig{MaxKeyBytes: 64, MaxValueBytes: 16 << 10, MaxBatchEntries: 100}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve runs the real server from cfg in-process until the test ends, and returns its RPC
// address.
func serve(t testing.TB, cfg *config.Config) string {
	t.Helper()
	s, err := server.Start(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s.RPCAddr()
}

// clientConf bounds every step of an Apache client: connect, read, write.
var clientConf = &thrift.TConfiguration{ConnectTimeout: 10 * time.Second, SocketTimeout: 10 * time.Second}

// dial opens a connection to addr carrying the Thrift binary protocol over transport wrap
// (framed, or THeader), and returns the generated client on it; the connection closes when
// the test ends.
func dial(t testing.TB, addr string, wrap func(thrift.TTransport) (thrift.TTransport, thrift.TProtocol)) *kv.KVServiceClient {
	t.Helper()
	sock := thrift.NewTSocketConf(addr, clientConf)
	trans, proto := wrap(sock)
	if err := trans.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = trans.Close() })
	return kv.NewKVServiceClient(thrift.NewTStandardClient(proto, proto))
}

// framed is the framed transport with the strict binary protocol: what Kitex's own clients
// send by default, and what every Apache Thrift library offers.
func framed(sock thrift.TTransport) (thrift.TTransport, thrift.TProtocol) {
	trans := thrift.NewTFramedTransportConf(sock, clientConf)
	return trans, thrift.NewTBinaryProtocolConf(trans, clientConf)
}

// header is Apache Thrift's THeader transport carrying the binary protocol. Kitex's TTHeader
// descends from the same format but has another magic number, and Kitex does not read it.
func header(sock thrift.TTransport) (thrift.TTransport, thrift.TProtocol) {
	conf := &thrift.TConfiguration{
		ConnectTimeout:    clientConf.ConnectTimeout,
		SocketTimeout:     clientConf.SocketTimeout,
		THeaderProtocolID: thrift.THeaderProtocolIDPtrMust(thrift.THeaderProtocolBinary),
	}
	trans := thrift.NewTHeaderTransportConf(sock, conf)
	return trans, thrift.NewTHeaderProtocolConf(trans, conf)
}
