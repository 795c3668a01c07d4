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
	"context"
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
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/putallkv/putallkv/internal/scriptrun"
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
	env   []string
}

// Options change how Start brings a cluster up.
type Options struct {
	// NodeTimeout is the nodes' cluster-node-timeout (how long a master may stop answering
	// before its replica replaces it); 0 keeps the script's default, 5 s. Failover tests set
	// it low, so that they spend little time waiting for one.
	NodeTimeout time.Duration
	// TLSDir, when set, makes the nodes speak only TLS, with the certificates of that directory
	// (as pkg/tlsconf/tlstest writes them: ca.pem, server.pem, server-key.pem, client.pem,
	// client-key.pem); a client must present one the CA signed.
	TLSDir string
	// Module makes every node load putallkv's Redis module (PUTALL.APPLY), built by
	// script/redis-module.sh.
	Module bool
}

// script is the path of script/redis-cluster.sh in this checkout.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "script", "redis-cluster.sh")
}

// Start brings a cluster up and returns once every node reports cluster_state:ok and every
// replica is linked to its master. A range of ports can be taken between the probe and the
// start (another test binary, an outgoing connection's port): Start then tries the next range.
func Start(opts Options) (*Cluster, error) {
	var env []string
	if opts.NodeTimeout > 0 {
		env = append(env, "REDIS_CLUSTER_NODE_TIMEOUT="+strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10))
	}
	if opts.TLSDir != "" {
		env = append(env, "REDIS_CLUSTER_TLS_DIR="+opts.TLSDir)
	}
	if opts.Module {
		out, err := scriptrun.Run(10*time.Minute, nil, filepath.Join(filepath.Dir(script()), "redis-module.sh"))
		if err != nil {
			return nil, fmt.Errorf("rediscluster: building the Redis module: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n") // the path is the last line
		env = append(env, "REDIS_CLUSTER_MODULE="+lines[len(lines)-1])
	}
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
		c, err := startAt(base, env)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func startAt(base int, env []string) (*Cluster, error) {
	out, err := run("up", base, env)
	if err != nil {
		return nil, err
	}
	c := &Cluster{base: base, env: env}
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
	_, err := run("down", c.base, c.env)
	return err
}

// Restart starts the node serving addr (one of Addrs) again after it died, with its data
// directory and cluster configuration: it rejoins as a replica of the master that replaced it.
func (c *Cluster) Restart(addr string) error {
	i, err := c.index(addr)
	if err != nil {
		return err
	}
	_, err = run("restart", c.base, c.env, strconv.Itoa(c.base+i))
	return err
}

// index is the index of the node serving addr: its port less the base port. (Not its index in
// Addrs, which a client given Addrs may have shuffled.)
func (c *Cluster) index(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	p, err2 := strconv.Atoi(port)
	if err != nil || err2 != nil || host != "127.0.0.1" || p < c.base || p >= c.base+Nodes {
		return 0, fmt.Errorf("rediscluster: %s is not a node of this cluster", addr)
	}
	return p - c.base, nil
}

// Signal sends sig to the redis-server serving addr (one of Addrs), as recorded by the script
// that started it: SIGKILL kills a node as a crash would, SIGSTOP and SIGCONT stall and resume
// it. It refuses a process that is no longer a redis-server.
func (c *Cluster) Signal(addr string, sig syscall.Signal) error {
	i, err := c.index(addr)
	if err != nil {
		return err
	}
	dir, err := os.ReadFile(fmt.Sprintf("/tmp/putallkv-redis-cluster-%d", c.base))
	if err != nil {
		return fmt.Errorf("rediscluster: the cluster's directory: %w", err)
	}
	pids, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "pids"))
	if err != nil {
		return fmt.Errorf("rediscluster: the cluster's pids: %w", err)
	}
	lines := strings.Fields(string(pids))
	if len(lines) != Nodes {
		return fmt.Errorf("rediscluster: %d pids recorded, want %d", len(lines), Nodes)
	}
	pid, err := strconv.Atoi(lines[i])
	if err != nil {
		return fmt.Errorf("rediscluster: pid %q: %w", lines[i], err)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "redis-server" {
		return fmt.Errorf("rediscluster: pid %d of %s is no longer a redis-server", pid, addr)
	}
	return syscall.Kill(pid, sig)
}

// run runs script/redis-cluster.sh with a bounded time and returns its combined output.
func run(cmd string, base int, env []string, args ...string) (string, error) {
	return scriptrun.Run(3*time.Minute, env, script(), append([]string{cmd, strconv.Itoa(base)}, args...)...)
}

// FreeBase returns a base port for a cluster started by other means than Start (a script a
// test runs, say): the first from REDIS_CLUSTER_BASE_PORT on, in steps of Nodes, whose ports
// and bus ports are free now, or without it one found as Start finds one.
func FreeBase() (int, error) {
	p := os.Getenv("REDIS_CLUSTER_BASE_PORT")
	if p == "" {
		return freeBase()
	}
	first, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("rediscluster: REDIS_CLUSTER_BASE_PORT=%q is not a port", p)
	}
	for base := first; base+Nodes-1+busOffset <= 65535 && base < first+50*Nodes; base += Nodes {
		if portsFree(base) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("rediscluster: no free range of ports from REDIS_CLUSTER_BASE_PORT=%d on", first)
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

// Main starts the binary's cluster, its nodes loading putallkv's Redis module, runs its tests under the module's goroutine-leak check
// (which knows rueidis's delayed closing of replaced connections), stops the cluster and exits. Call it from TestMain.
func Main(m *testing.M) {
	c, err := Start(Options{Module: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = c
	leakcheck.VerifyTestMain(m, append(LeakOptions(),
		goleak.Cleanup(func(code int) {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				if code == 0 {
					code = 1
				}
			}
			os.Exit(code)
		}))...)
}

// LeakOptions are the goroutines of rueidis that outlive a closed client, for the leak check
// of a test binary that starts clusters of its own. A rueidis cluster client that refreshed
// its slot map closes the connections it replaced five seconds later, in a goroutine that
// outlives the client's Close; and a lazy refresh (after a MOVED or a failed connection)
// sleeps out its start delay in a goroutine of its own, which Close does not stop either.
// Both end by themselves.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
	}
}

// Addrs returns the addresses of the cluster Main started.
func Addrs(t testing.TB) []string {
	t.Helper()
	if shared == nil {
		t.Fatal("rediscluster: no cluster: call rediscluster.Main from TestMain")
	}
	return shared.Addrs
}

// CommandCalls is how many times the masters of the cluster Main started have run the command
// name (as INFO commandstats names it: lower case, "putall.apply" say) since they started, so
// that a test can tell which command served its writes.
func CommandCalls(t testing.TB, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := func(addr string, args ...string) string {
		host, port, _ := net.SplitHostPort(addr)
		out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).Output()
		if err != nil {
			t.Fatalf("redis-cli %v on %s: %v", args, addr, err)
		}
		return string(out)
	}
	total := 0
	for _, addr := range Addrs(t) {
		if role, _, _ := strings.Cut(cli(addr, "role"), "\n"); strings.TrimSpace(role) != "master" {
			continue
		}
		for _, line := range strings.Split(cli(addr, "info", "commandstats"), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls="); ok {
				calls, _, _ := strings.Cut(rest, ",")
				n, err := strconv.Atoi(calls)
				if err != nil {
					t.Fatalf("INFO commandstats on %s: %q", addr, line)
				}
				total += n
			}
		}
	}
	return total
}
