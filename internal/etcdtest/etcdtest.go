// Package etcdtest runs a real etcd on loopback for the tests of discovery, through
// script/etcd.sh: the same script a newcomer runs by hand (it installs Debian's etcd-server
// when missing). A test binary starts one etcd in its TestMain (Main) and its tests share it
// (Endpoints), each under a service name of its own.
//
// The etcd takes two consecutive free ports (client, peer) from 23000-23499, found by probing;
// ETCD_TEST_PORT, when set, is the first client port to try.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/putallkv/putallkv/internal/scriptrun"
	"github.com/putallkv/putallkv/pkg/leakcheck"
)

// The range of client ports tried, each with the port above it for etcd's peers.
const (
	firstPort = 23000
	lastPort  = 23498
)

// script is the path of script/etcd.sh in this checkout.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "script", "etcd.sh")
}

// start brings an etcd up on the first free pair of ports from first (wrapping within the
// range), trying a few pairs: one can be taken between the probe and the start.
func start(first int) (port int, err error) {
	var errs []error
	for p, tries := first, 0; tries < 8; p += 2 {
		if p > lastPort {
			p = firstPort
		}
		if !free(p) || !free(p+1) {
			continue
		}
		tries++
		out, err := run("up", p)
		if err == nil && strings.Contains(out, "etcd: up") {
			return p, nil
		}
		errs = append(errs, fmt.Errorf("port %d: %v: %s", p, err, out))
	}
	return 0, fmt.Errorf("etcdtest: no etcd started: %w", errors.Join(errs...))
}

// free reports whether nothing listens on 127.0.0.1:port.
func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// run runs script/etcd.sh with a bounded time (an install included) and returns its output.
func run(cmd string, port int) (string, error) {
	return scriptrun.Run(10*time.Minute, nil, script(), cmd, strconv.Itoa(port))
}

// port is the client port of the etcd Main started.
var port int

// Main starts the binary's etcd, runs its tests under the module's goroutine-leak check, stops
// the etcd and exits. Call it from TestMain.
func Main(m *testing.M) { MainWith(m, MainOptions{}) }

// MainOptions are what else a test binary's TestMain sets up beside its etcd.
type MainOptions struct {
	// Cleanups run after the tests and the etcd's stop (removing a built binary, stopping
	// another server); an error fails the run.
	Cleanups []func() error
	// Leak are goroutines the leak check is to ignore (another client's, such as
	// rediscluster.LeakOptions).
	Leak []goleak.Option
}

// MainWith is Main with the options o.
func MainWith(m *testing.M, o MainOptions) {
	first := firstPort + 2*(os.Getpid()%((lastPort-firstPort)/2))
	if p := os.Getenv("ETCD_TEST_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcdtest: ETCD_TEST_PORT=%q is not a port\n", p)
			os.Exit(1)
		}
		first = n
	}
	p, err := start(first)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	port = p
	leakcheck.VerifyTestMain(m, append(o.Leak, goleak.Cleanup(func(code int) {
		if out, err := run("down", port); err != nil {
			fmt.Fprintln(os.Stderr, err, out)
			if code == 0 {
				code = 1
			}
		}
		for _, c := range o.Cleanups {
			if err := c(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = max(code, 1)
			}
		}
		os.Exit(code)
	}))...)
}

// Endpoints returns the client address of the etcd Main started.
func Endpoints(t testing.TB) []string {
	t.Helper()
	if port == 0 {
		t.Fatal("etcdtest: no etcd: call etcdtest.Main from TestMain")
	}
	return []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}
