// Package rediscluster runs a real Redis Cluster (3 masters, 3 replicas on loopback) for the
// tests of the redis_cluster engine, through script/redis-cluster.sh: the same script a
// newcomer runs by hand. A test binary starts one cluster in its TestMain (Main) and its tests
// share it (Addrs), so that the few seconds a cluster takes to form are paid once per binary.
//
// The cluster's ports are six free consecutive ports (whose cluster-bus ports, 10000 above, are
// free too) found by probing; REDIS_CLUSTER_BASE_PORT, when set, is the first port to try
// (then the six after it, and so on). It is not named PUTALLKV_*: the binary refuses variables
// of its own prefix that name no configuration key.
package rediscluster

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

// Nodes is how many redis-server processes a cluster runs: 3 masters and 3 replicas.
const Nodes = 6

// busOffset is how far above a node's port Redis puts its cluster-bus port.
const busOffset = 10000

// Cluster is one running cluster the script started.
type Cluster struct {
	// Addrs are the nodes' host:port addresses, masters and replicas alike (any serves as a
	// seed for a cluster client).
	Addrs []string
	base  int
}

// script is the path of script/redis-cluster.sh in this checkout.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "script", "redis-cluster.sh")
}

// Start brings a cluster up and returns once every node reports cluster_state:ok and every
// replica is linked to its master. A range of ports can be taken between the probe and the
// start (another test binary, an outgoing connection's port): Start then tries the next range.
func Start() (*Cluster, error) {
	next := func(int) (int, error) { return freeBase() }
	if p := os.Getenv("REDIS_CLUSTER_BASE_PORT"); p != "" {
		first, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("rediscluster: REDIS_CLUSTER_BASE_PORT=%q is not a port", p)
		}
		next = func(try int) (int, error) { return first + try*Nodes, nil }
	}
	var errs []error
	for try := range 4 {
		base, err := next(try)
		if err != nil {
			return nil, err
		}
		if !portsFree(base) {
			errs = append(errs, fmt.Errorf("rediscluster: ports %d..%d (or their bus ports) are taken", base, base+Nodes-1))
			continue
		}
		c, err := startAt(base)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func startAt(base int) (*Cluster, error) {
	out, err := run("up", base)
	if err != nil {
		return nil, err
	}
	c := &Cluster{base: base}
	for i := range Nodes {
		c.Addrs = append(c.Addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
	}
	if !strings.Contains(out, "redis-cluster: up") {
		c.Stop()
		return nil, fmt.Errorf("rediscluster: unexpected output of up: %s", out)
	}
	return c, nil
}

// Stop stops exactly the processes Start started, and removes their data.
func (c *Cluster) Stop() error {
	_, err := run("down", c.base)
	return err
}

// run runs the script with a bounded time and returns its combined output.
func run(cmd string, base int) (string, error) {
	var out bytes.Buffer
	x := exec.Command(script(), cmd, strconv.Itoa(base))
	x.Stdout, x.Stderr = &out, &out
	x.WaitDelay = time.Second
	if err := x.Start(); err != nil {
		return "", fmt.Errorf("rediscluster: %s: %w", cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- x.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("rediscluster: %s %d: %w\n%s", cmd, base, err, out.String())
		}
		return out.String(), nil
	case <-time.After(3 * time.Minute):
		x.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("rediscluster: %s %d did not finish within 3 minutes\n%s", cmd, base, out.String())
	}
}

// freeBase finds a base port whose Nodes ports and their bus ports are free now, all below the
// range Linux hands out to outgoing connections (32768 and up).
func freeBase() (int, error) {
	for range 50 {
		base := 10000 + rand.IntN(22768-busOffset-Nodes)
		if portsFree(base) {
			return base, nil
		}
	}
	return 0, errors.New("rediscluster: found no free range of ports")
}

func portsFree(base int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range Nodes {
		for _, p := range []int{base + i, base + i + busOffset} {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				return false
			}
			ls = append(ls, l)
		}
	}
	return true
}

// shared is the cluster Main started for this test binary.
var shared *Cluster

// Main starts the binary's cluster, runs its tests under the module's goroutine-leak check
// (which knows rueidis's delayed closing of replaced connections), stops the cluster and exits. Call it from TestMain.
func Main(m *testing.M) {
	c, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = c
	// A rueidis cluster client that refreshed its slot map closes the connections it replaced
	// five seconds later, in a goroutine that outlives the client's Close; and a lazy refresh
	// (after a MOVED or a failed connection) sleeps out its start delay in a goroutine of its
	// own, which Close does not stop either. Both end by themselves.
	leakcheck.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
		goleak.Cleanup(func(code int) {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				if code == 0 {
					code = 1
				}
			}
			os.Exit(code)
		}))
}

// Addrs returns the addresses of the cluster Main started.
func Addrs(t testing.TB) []string {
	t.Helper()
	if shared == nil {
		t.Fatal("rediscluster: no cluster: call rediscluster.Main from TestMain")
	}
	return shared.Addrs
}
