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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/leakcheck"
	"github.com/putallkv/putallkv/test/thrift/gen/kv"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// quiet is the servers' log, which no test reads.
var quiet = slog.New(slog.DiscardHandler)

// repoRoot is the repository's root directory, where idl/ and examples/ are: go test runs
// a package's tests in its directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// tool is a program a test needs and the Debian package that provides it.
type tool struct {
	name    string
	pkg     string
	present func() bool
}

// compiler is the Apache Thrift compiler.
var compiler = tool{"the thrift compiler", "thrift-compiler", func() bool {
	_, err := exec.LookPath("thrift")
	return err == nil
}}

// python is Debian's interpreter, into which python3-thrift installs (a python3 earlier on
// PATH, such as pyenv's, does not have it).
const python = "/usr/bin/python3"

// pythonThrift is Apache Thrift's Python library, for Debian's interpreter.
var pythonThrift = tool{"Python's thrift module", "python3-thrift", func() bool {
	return exec.Command(python, "-c", "import thrift").Run() == nil
}}

// installMu serialises installs by apt-get.
var installMu sync.Mutex

// needTools makes sure the tools are there, installing the Debian packages of those missing
// when the tests run as root (as in CI), where a failed install fails the test. Without root
// the test is skipped, saying what to install.
func needTools(t *testing.T, tools ...tool) {
	t.Helper()
	missing := func() (names, pkgs []string) {
		for _, tl := range tools {
			if !tl.present() {
				names, pkgs = append(names, tl.name), append(pkgs, tl.pkg)
			}
		}
		return names, pkgs
	}
	installMu.Lock()
	defer installMu.Unlock()
	names, pkgs := missing()
	if len(pkgs) == 0 {
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs %v: apt-get install -y %v, or run the tests as root, which installs them", names, strings.Join(pkgs, " "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `apt-get update -qq && apt-get install -y -qq "$@"`, "sh")
	cmd.Args = append(cmd.Args, pkgs...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get install %v: %v\n%s", pkgs, err, out)
	}
	if names, _ := missing(); len(names) > 0 {
		t.Fatalf("still missing %v after apt-get install %v", names, pkgs)
	}
}

// testConfig is the embedded default configuration on ephemeral loopback ports, with limits
// small enough to reach.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	return testserver.Config(t, func(cfg *config.Config) {
		cfg.Limits.MaxKeyBytes, cfg.Limits.MaxValueBytes, cfg.Limits.MaxBatchEntries = 64, 16<<10, 100
	})
}

// serve runs the real server from cfg in-process until the test ends, and returns its RPC
// address.
func serve(t testing.TB, cfg *config.Config) string {
	t.Helper()
	return testserver.Start(t, cfg, quiet).RPCAddr()
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
