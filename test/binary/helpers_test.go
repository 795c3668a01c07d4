// Package binary holds the tests of the built binaries, putallkv and putallctl, run as an
// operator runs them: flags, configuration files, signals, exit codes, logs, data directories
// across restarts, the SIGKILL crash test, and two nodes on one Redis Cluster. TestMain builds
// both binaries once (and the first test that needs a Redis Cluster starts one, stopped at
// the end); every helper the tests share is in this file.
package binary

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/pkg/leakcheck"
)

// built holds the paths of the binaries TestMain built ("" under -short, which builds none).
var built struct{ server, ctl string }

// root is the module's root, where build.sh is: go test runs a package's tests in the
// package's directory, test/binary.
var root = filepath.Join("..", "..")

func TestMain(m *testing.M) {
	flag.Parse()
	dir := ""
	if !testing.Short() {
		var err error
		if dir, err = os.MkdirTemp("", "putallkv-binaries-"); err == nil {
			err = build(dir)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "building the binaries: %v\n", err)
			_ = os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	leakcheck.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		if err := stopCluster(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = max(code, 1)
		}
		os.Exit(code)
	}))
}

// build builds putallkv and putallctl into dir with one go build, stamped as build.sh stamps
// them (./build.sh ldflags).
func build(dir string) error {
	cmd := exec.Command("./build.sh", "ldflags")
	cmd.Dir = root
	ldflags, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("./build.sh ldflags: %w", err)
	}
	cmd = exec.Command("go", "build", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", dir+string(filepath.Separator), ".", "./cmd/putallctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	built.server, built.ctl = filepath.Join(dir, "putallkv"), filepath.Join(dir, "putallctl")
	return nil
}

// cluster is the Redis Cluster of this test binary, started by the first test that needs one.
var cluster struct {
	once sync.Once
	c    *rediscluster.Cluster
	err  error
}

// redisCluster returns the seed addresses of this binary's Redis Cluster (script/redis-cluster.sh
// through internal/rediscluster, which honours REDIS_CLUSTER_BASE_PORT), starting it on first use.
func redisCluster(t *testing.T) string {
	t.Helper()
	cluster.once.Do(func() { cluster.c, cluster.err = rediscluster.Start(rediscluster.Options{}) })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	return strings.Join(cluster.c.Addrs, ",")
}

// stopCluster stops the Redis Cluster if a test started one.
func stopCluster() error {
	if cluster.c == nil {
		return nil
	}
	return cluster.c.Stop()
}

// binaries returns the paths of the server and putallctl binaries; under -short, which builds
// none, it skips the test.
func binaries(t *testing.T) (server, ctl string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	return built.server, built.ctl
}

// servingLine finds the addresses in the start-up line, logged as text or as JSON.
var servingLine = regexp.MustCompile(`msg="putallkv serving" rpc=(\S*) admin=(\S+) gateway=(\S*)|` +
	`"msg":"putallkv serving","rpc":"([^"]*)","admin":"([^"]+)","gateway":"([^"]*)"`)

// baseConf puts the server on ephemeral loopback ports.
const baseConf = "server:\n  addr: 127.0.0.1:0\n  shutdown_timeout: 5s\nadmin:\n  addr: 127.0.0.1:0\ngateway:\n  addr: 127.0.0.1:0\n"

// proc is a started server binary.
type proc struct {
	cmd   *exec.Cmd
	rpc   string      // its RPC address ("" for a gateway tier)
	admin string      // its admin address
	early []string    // its log up to and including the serving line
	gw    string      // its gateway address ("" without one)
	logs  chan string // the rest of its log, closed when it exits
}

// startBinary starts the server binary with confFile holding conf and returns it once it serves.
// args go before -conf (e.g. "gateway").
func startBinary(t *testing.T, server, confFile, conf string, args ...string) *proc {
	t.Helper()
	return startCommand(t, exec.Command(server, append(args, "-conf", confFile)...), confFile, conf)
}

// startCommand is startBinary with the command that runs the server given (a shell that sets
// limits first, say); it must take its configuration from confFile.
func startCommand(t *testing.T, cmd *exec.Cmd, confFile, conf string) *proc {
	t.Helper()
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		for range lines { // let the log reader finish
		}
	})
	sc := bufio.NewScanner(stderr)
	p := &proc{cmd: cmd, logs: lines}
	for sc.Scan() {
		p.early = append(p.early, sc.Text())
		if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
			p.rpc, p.admin, p.gw = strings.Trim(m[1]+m[4], `"`), m[2]+m[5], strings.Trim(m[3]+m[6], `"`)
			break
		}
	}
	if p.admin == "" {
		close(lines)
		t.Fatalf("putallkv exited without serving: %v", sc.Err())
	}
	go func() {
		defer close(lines)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return p
}

// discardLogs reads p's log and drops it, for a test that reads none of it.
func discardLogs(p *proc) {
	go func() {
		for range p.logs {
		}
	}()
}

// waitLog reads p's log until a line containing s and returns it; the process ending first
// fails the test.
func waitLog(t *testing.T, p *proc, s string) string {
	t.Helper()
	for l := range p.logs {
		if strings.Contains(l, s) {
			return l
		}
	}
	t.Fatalf("the server exited before logging %q", s)
	return ""
}

// stopBinary stops a started server with SIGTERM and waits for it.
func stopBinary(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range p.logs {
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("putallkv exited with %v after SIGTERM", err)
	}
}

type ctlResult struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
	Code    string `json:"code"`
	Value   string `json:"value_base64"`
}

// ctl runs putallctl and returns its stdout, stderr and exit code.
func ctl(t *testing.T, bin, addr string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("putallctl %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// decodeResults reads the JSON lines of putallctl --json.
func decodeResults(t *testing.T, out string) []ctlResult {
	t.Helper()
	var rs []ctlResult
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var r ctlResult
		if err := dec.Decode(&r); err == io.EOF {
			return rs
		} else if err != nil {
			t.Fatalf("putallctl --json printed %q: %v", out, err)
		}
		rs = append(rs, r)
	}
}

// walCtl runs `putallctl wal ARGS...` and returns its combined output and exit code.
func walCtl(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"wal"}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("putallctl wal %v: %v", args, err)
	}
	return string(out), exitCode(err)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
