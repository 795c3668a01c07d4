// Package deploy tests ./build.sh package and ./build.sh deploy end to end, as an operator runs
// them: release archives built from this tree under two versions, node directories on
// loopback ports 21100-21121, a durable node written to through the SDK while it is
// redeployed, a configuration the new binary refuses (on a deploy and on --restart), a release
// whose binary exits at once, several nodes rolled one at a time, a redeploy that changes
// nothing, --rollback, and the systemd unit checked by systemd-analyze. Every node the test
// starts is stopped at its end.
package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) {
	// Kitex logs a warning for each dial it retries while a node restarts; the calls' outcomes
	// are what the test checks.
	klog.SetLevel(klog.LevelError)
	leakcheck.VerifyTestMain(m)
}

// root is the module's root, where build.sh is.
var root = filepath.Join("..", "..")

// The versions of the releases the test builds.
const (
	v1     = "deploytest-1"
	v2     = "deploytest-2"
	broken = "deploytest-broken"
)

// node is a node directory and its loopback ports.
type node struct {
	dir   string
	rpc   string
	admin string
}

// newNode makes a node directory whose configuration puts the node on the ports
// 127.0.0.1:base (RPC) and base+1 (admin), with a durable store in DIR/data when durable.
func newNode(t *testing.T, base int, durable bool) node {
	t.Helper()
	n := node{dir: t.TempDir(), rpc: "127.0.0.1:" + strconv.Itoa(base), admin: "127.0.0.1:" + strconv.Itoa(base+1)}
	if err := os.Mkdir(filepath.Join(n.dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	n.writeConf(t, "")
	if durable {
		// Through conf/putallkv.env, which the node and its check read.
		if err := os.WriteFile(filepath.Join(n.dir, "conf", "putallkv.env"), []byte("# the store\nPUTALLKV_STORE_DATA_DIR=data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// writeConf writes the node's configuration, with extra appended.
func (n node) writeConf(t *testing.T, extra string) {
	t.Helper()
	conf := "server:\n  addr: " + n.rpc + "\n  shutdown_timeout: 5s\nadmin:\n  addr: " + n.admin + "\ngateway:\n  addr: \"\"\n" + extra
	if err := os.WriteFile(filepath.Join(n.dir, "conf", "putallkv.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pid is the node's pid from its pid file (0 when there is none).
func (n node) pid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "putallkv.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

// current is the release DIR/current points at.
func (n node) current(t *testing.T) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(n.dir, "current"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(target)
}

// version is the version the running node reports in putallkv_build_info.
func (n node) version(t *testing.T) string {
	t.Helper()
	metrics := testnet.Get(t, "http://"+n.admin+"/metrics")
	_, rest, ok := strings.Cut(metrics, "putallkv_build_info{")
	if !ok {
		t.Fatalf("no putallkv_build_info on /metrics")
	}
	labels, _, _ := strings.Cut(rest, "}")
	for _, l := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(l, `version="`); ok {
			return strings.TrimSuffix(v, `"`)
		}
	}
	t.Fatalf("putallkv_build_info has no version label: {%s}", labels)
	return ""
}

// stop stops the node with deploy --stop and checks its process is gone.
func (n node) stop(t *testing.T) {
	pid := n.pid(t)
	if out, err := deploy(t, "--stop", n.dir); err != nil {
		t.Errorf("deploy --stop %s: %v\n%s", n.dir, err, out)
	}
	if pid != 0 && running(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("node %s (pid %d) still ran after deploy --stop", n.dir, pid)
	}
}

// running reports whether pid is a process that has not exited (a zombie has).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// deploy runs ./build.sh deploy ARGS and returns its output and error.
func deploy(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./build.sh", append([]string{"deploy"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DEPLOY_READY_TIMEOUT=20", "DEPLOY_STOP_TIMEOUT=15")
	out, err := cmd.CombinedOutput()
	t.Logf("./build.sh deploy %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// pack runs ./build.sh package into dir once for each version (RELEASE_VERSION), all at once,
// and returns the archives.
func pack(t *testing.T, dir string, versions ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	archives, errs := make([]string, len(versions)), make([]error, len(versions))
	var wg sync.WaitGroup
	for i, v := range versions {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, "./build.sh", "package", dir)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "RELEASE_VERSION="+v)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				errs[i] = fmt.Errorf("./build.sh package (%s): %w\n%s", v, err, stderr.Bytes())
			}
			archives[i] = strings.TrimSpace(string(out))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return archives
}

// breakRelease writes, from the release archive from, a release of version whose
// bin/putallkv passes -version and -check-config (the real binary answers those) but exits 1
// at once when started, with a manifest that matches: a release deploy installs, then must
// roll back.
func breakRelease(t *testing.T, from, version string) string {
	t.Helper()
	files := readArchive(t, from)
	real := files["bin/putallkv"]
	files["bin/putallkv.real"] = real
	files["bin/putallkv"] = file{mode: 0o755, data: []byte(`#!/bin/sh
case " $* " in
*" -version "*) echo "putallkv ` + version + ` (commit none, go)"; exit 0 ;;
*" -check-config "*) exec "$(dirname "$0")/putallkv.real" "$@" ;;
esac
echo "putallkv: this build exits at once" >&2
exit 1
`)}
	files["VERSION"] = file{mode: 0o644, data: []byte(version + "\n")}
	delete(files, "SHA256SUMS")
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var sums strings.Builder
	for _, name := range names {
		fmt.Fprintf(&sums, "%x  %s\n", sha256.Sum256(files[name].data), name)
	}
	files["SHA256SUMS"] = file{mode: 0o644, data: []byte(sums.String())}
	return writeArchive(t, filepath.Join(t.TempDir(), "putallkv-"+version+".tar.gz"), "putallkv-"+version, files)
}

// file is a regular file of a release archive.
type file struct {
	mode int64
	data []byte
}

// readArchive returns the regular files of a release archive by their path inside its
// top directory.
func readArchive(t *testing.T, path string) map[string]file {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]file{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		_, name, _ := strings.Cut(h.Name, "/")
		files[name] = file{mode: h.Mode, data: data}
	}
}

// writeArchive writes files under top into a .tar.gz at path and returns path.
func writeArchive(t *testing.T, path, top string, files map[string]file) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: top + "/" + name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writer writes through the SDK until stopped: call i puts live/i/0..3 ATOMIC with the
// request_id live-i, then reads them back with GetAll.
type writer struct {
	c       *kvclient.Client
	acked   atomic.Int64  // calls acknowledged and read back
	tick    chan struct{} // a value after an acknowledged call (coalesced)
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	failed  int
	firstEr error
	slowest time.Duration // the longest call, retries included
}

func startWriter(c *kvclient.Client) *writer {
	w := &writer{c: c, tick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *writer) run() {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		start := time.Now()
		err := w.call(i)
		w.mu.Lock()
		w.slowest = max(w.slowest, time.Since(start))
		if err != nil {
			w.failed++
			if w.firstEr == nil {
				w.firstEr = fmt.Errorf("call %d: %w", i, err)
			}
		}
		w.mu.Unlock()
		if err != nil {
			continue
		}
		w.acked.Add(1)
		select {
		case w.tick <- struct{}{}:
		default:
		}
	}
}

// call makes write i and reads it back.
func (w *writer) call(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := fmt.Sprintf("live-%d", i)
	keys := liveKeys(i)
	req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, RequestId: &id}
	for _, k := range keys {
		req.Entries = append(req.Entries, &kv.Entry{Key: k, Value: []byte(id)})
	}
	if _, err := w.c.PutAll(ctx, req); err != nil {
		return err
	}
	return checkValues(ctx, w.c, keys, id)
}

func liveKeys(i int) []string {
	return []string{fmt.Sprintf("live/%d/0", i), fmt.Sprintf("live/%d/1", i), fmt.Sprintf("live/%d/2", i), fmt.Sprintf("live/%d/3", i)}
}

// checkValues reads keys with GetAll and fails unless each holds value.
func checkValues(ctx context.Context, c *kvclient.Client, keys []string, value string) error {
	resp, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	if err != nil {
		return err
	}
	for i, it := range resp.Items {
		if !it.Found || string(it.Value) != value {
			return fmt.Errorf("%s = %q (found %v), want %q", keys[i], it.Value, it.Found, value)
		}
	}
	return nil
}

// waitAcked waits until n calls were acknowledged, up to a minute.
func (w *writer) waitAcked(t *testing.T, n int64) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for w.acked.Load() < n {
		select {
		case <-w.tick:
		case <-w.done:
			t.Fatalf("the writer stopped at %d acknowledged calls", w.acked.Load())
		case <-deadline.C:
			t.Fatalf("only %d of %d calls acknowledged within a minute", w.acked.Load(), n)
		}
	}
}

// finish stops the writer and returns how many calls it had acknowledged, its failures and
// its longest call.
func (w *writer) finish() (acked int64, failed int, firstErr error, slowest time.Duration) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked.Load(), w.failed, w.firstEr, w.slowest
}

func TestDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds release archives")
	}
	pkgDir := t.TempDir()
	rels := pack(t, pkgDir, v1, v2)
	rel1, rel2 := rels[0], rels[1]
	relBroken := breakRelease(t, rel1, broken)
	a := newNode(t, 21100, true)

	if out, err := deploy(t, "--release", rel1, a.dir); err != nil {
		t.Fatalf("first deploy: %v\n%s", err, out)
	}
	if got := a.current(t); got != v1 {
		t.Fatalf("current = %s after deploying %s", got, v1)
	}

	// A client retrying idempotent calls for as long as a restart takes.
	c, err := kvclient.New([]string{a.rpc}, kvclient.WithRetries(12), kvclient.WithRPCTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := make([]string, 32)
	req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC}
	for i := range before {
		before[i] = fmt.Sprintf("before/%02d", i)
		req.Entries = append(req.Entries, &kv.Entry{Key: before[i], Value: []byte("v1")})
	}
	if _, err := c.PutAll(context.Background(), req); err != nil {
		t.Fatal(err)
	}

	t.Run("v2 under load", func(t *testing.T) {
		oldPid := a.pid(t)
		w := startWriter(c)
		w.waitAcked(t, 20)
		out, err := deploy(t, "--release", rel2, a.dir)
		atDeploy := w.acked.Load()
		w.waitAcked(t, atDeploy+20)
		acked, failed, firstErr, slowest := w.finish()
		if err != nil {
			t.Fatalf("deploy %s: %v\n%s", v2, err, out)
		}
		if failed != 0 {
			t.Errorf("%d calls failed while %s was deployed; the first: %v", failed, v2, firstErr)
		}
		if running(oldPid) || a.pid(t) == oldPid {
			t.Errorf("the %s process (pid %d) still runs, or the pid file still names it", v1, oldPid)
		}
		if got := a.version(t); got != v2 || a.current(t) != v2 {
			t.Errorf("after deploying %s the node reports %s, current is %s", v2, got, a.current(t))
		}
		// Everything acknowledged, before and during the deploy, is there.
		ctx := context.Background()
		if err := checkValues(ctx, c, before, "v1"); err != nil {
			t.Error(err)
		}
		for i := range int(acked) {
			if err := checkValues(ctx, c, liveKeys(i), fmt.Sprintf("live-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%d calls acknowledged, %d of them between the first 20 and the deploy's end; the longest call (PutAll and GetAll, retries included) took %v",
			acked, atDeploy-20, slowest)
	})

	t.Run("configuration refused", func(t *testing.T) {
		pid := a.pid(t)
		a.writeConf(t, "store:\n  shards: 3\n")
		for _, args := range [][]string{{"--release", rel1}, {"--restart"}} {
			out, err := deploy(t, append(args, a.dir)...)
			if err == nil || !strings.Contains(out, "refuses the node's configuration") || !strings.Contains(out, "store.shards") {
				t.Errorf("%s with a configuration the binary refuses: %v, want a refusal naming store.shards", args[0], err)
			}
			if a.pid(t) != pid || !running(pid) || a.current(t) != v2 {
				t.Errorf("a refused %s touched the node: pid %d (was %d), current %s", args[0], a.pid(t), pid, a.current(t))
			}
		}
		a.writeConf(t, "")
		if out, err := deploy(t, "--restart", a.dir); err != nil || a.pid(t) == pid || running(pid) || a.version(t) != v2 {
			t.Errorf("--restart: %v, pid %d (was %d), serving %s\n%s", err, a.pid(t), pid, a.version(t), out)
		}
	})

	t.Run("broken release rolls back", func(t *testing.T) {
		out, err := deploy(t, "--release", relBroken, a.dir)
		if err == nil || !strings.Contains(out, "rolled back: release "+v2+" is serving") {
			t.Fatalf("deploy of a release that exits at once: %v, want a rollback to %s", err, v2)
		}
		if a.current(t) != v2 || a.version(t) != v2 {
			t.Errorf("after the rollback current is %s and the node reports %s; want %s", a.current(t), a.version(t), v2)
		}
		if err := checkValues(context.Background(), c, before, "v1"); err != nil {
			t.Errorf("after the rollback: %v", err)
		}
		if h := history(t, a); h != v1+","+v2 {
			t.Errorf("history = %s; a failed deploy must not enter it", h)
		}
	})

	t.Run("same release again", func(t *testing.T) {
		pid := a.pid(t)
		out, err := deploy(t, "--release", rel2, a.dir)
		if err != nil || !strings.Contains(out, "nothing changed") || a.pid(t) != pid || !running(pid) {
			t.Errorf("redeploying %s: %v, pid %d (was %d); want nothing changed", v2, err, a.pid(t), pid)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		if out, err := deploy(t, "--rollback", a.dir); err != nil {
			t.Fatalf("--rollback: %v\n%s", err, out)
		}
		if a.current(t) != v1 || a.version(t) != v1 || history(t, a) != v1 {
			t.Errorf("after --rollback: current %s, node %s, history %s; want %s", a.current(t), a.version(t), history(t, a), v1)
		}
		if err := checkValues(context.Background(), c, before, "v1"); err != nil {
			t.Errorf("after --rollback: %v", err)
		}
		if out, err := deploy(t, "--rollback", a.dir); err == nil || !strings.Contains(out, "no earlier release") {
			t.Errorf("--rollback past the first release: %v", err)
		}
	})

	t.Run("several nodes", func(t *testing.T) {
		b, d := newNode(t, 21110, false), newNode(t, 21120, false)
		if out, err := deploy(t, "--release", rel1, b.dir, d.dir); err != nil {
			t.Fatalf("deploying two nodes: %v\n%s", err, out)
		}
		if b.version(t) != v1 || d.version(t) != v1 {
			t.Fatalf("nodes report %s and %s; want %s", b.version(t), d.version(t), v1)
		}
		pid := d.pid(t)
		out, err := deploy(t, "--release", relBroken, b.dir, d.dir)
		if err == nil || !strings.Contains(out, "stopped at "+b.dir) {
			t.Errorf("a broken release on two nodes: %v; want it stopped at the first", err)
		}
		if b.current(t) != v1 || b.version(t) != v1 {
			t.Errorf("the first node was not rolled back: current %s, serving %s", b.current(t), b.version(t))
		}
		if _, err := os.Stat(filepath.Join(d.dir, "releases", broken)); !errors.Is(err, fs.ErrNotExist) || d.pid(t) != pid {
			t.Errorf("the second node was touched: %v, pid %d (was %d)", err, d.pid(t), pid)
		}
	})

	t.Run("systemd unit", func(t *testing.T) {
		verifyUnit(t, a)
	})
}

// history is the node's history file, one version a line, joined with commas.
func history(t *testing.T, n node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "history"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), ",")
}

// verifyUnit checks the release's systemd unit with systemd-analyze verify, pointed at the
// node directory n (whose current release holds the binaries the unit runs): no error and no
// warning.
func verifyUnit(t *testing.T, n node) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
	}
	unit, err := os.ReadFile(filepath.Join(n.dir, "current", "conf", "systemd", "putallkv.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("/srv/putallkv/current/bin/putallkv")) {
		t.Fatalf("the unit does not run /srv/putallkv/current/bin/putallkv:\n%s", unit)
	}
	path := filepath.Join(t.TempDir(), "putallkv.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/srv/putallkv"), []byte(n.dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "LimitNOFILE=", "NoNewPrivileges=yes", "ProtectSystem=strict"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %s", want)
		}
	}
}
