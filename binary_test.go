package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinaries builds putallkv and putallctl into a temporary directory, stamped as
// build.sh stamps them.
func buildBinaries(t *testing.T) (server, ctl string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	ldflags, err := exec.Command("./build.sh", "ldflags").Output()
	if err != nil {
		t.Fatalf("./build.sh ldflags: %v", err)
	}
	dir := t.TempDir()
	server, ctl = filepath.Join(dir, "putallkv"), filepath.Join(dir, "putallctl")
	for out, pkg := range map[string]string{server: ".", ctl: "./cmd/putallctl"} {
		if b, err := exec.Command("go", "build", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return server, ctl
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

// TestBinaryServesAndStopsCleanly builds the real binaries, starts the server, drives it with
// putallctl (a PutAll of 16 keys read back with GetAll at the versions it returned) and stops
// it with SIGTERM.
func TestBinaryServesAndStopsCleanly(t *testing.T) {
	server, bin := buildBinaries(t)
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), baseConf)
	cmd, addr, logs := p.cmd, p.rpc, p.logs

	var lines strings.Builder
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("batch/%02d", i)
		fmt.Fprintf(&lines, "{\"key\":%q,\"value\":\"v%d\"}\n", keys[i], i)
	}
	out, errOut, code := ctl(t, bin, addr, lines.String(), "putall", "--atomic", "--json")
	if code != 0 {
		t.Fatalf("putall exit %d: %s", code, errOut)
	}
	put := decodeResults(t, out)
	if len(put) != 16 {
		t.Fatalf("putall printed %d results: %q", len(put), out)
	}
	out, errOut, code = ctl(t, bin, addr, "", append([]string{"getall", "--json"}, keys...)...)
	if code != 0 {
		t.Fatalf("getall exit %d: %s", code, errOut)
	}
	got := decodeResults(t, out)
	for i, r := range got {
		if r.Key != keys[i] || r.Version != put[i].Version || r.Code != "OK" || r.Value == "" {
			t.Errorf("getall %d = %+v; want %s at version %d", i, r, keys[i], put[i].Version)
		}
	}

	if _, errOut, code = ctl(t, bin, addr, "", "put", "k", "v", "--expect", "99"); code != 1 || !strings.HasPrefix(errOut, "putallctl: VERSION_MISMATCH: ") {
		t.Errorf("conditional put: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code = ctl(t, bin, addr, "", "get", "missing"); code != 1 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Errorf("get missing: exit %d, stderr %q", code, errOut)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("putallkv exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("putallkv did not exit within 30s of SIGTERM")
	}
	stopped := false
	for l := range logs {
		stopped = stopped || strings.Contains(l, "msg=stopped")
	}
	if !stopped {
		t.Error("no \"stopped\" log line after SIGTERM")
	}
}

// TestBinaryRefusesBadConfig checks that an invalid value stops start-up with a message naming
// the key.
func TestBinaryRefusesBadConfig(t *testing.T) {
	server, _ := buildBinaries(t)
	for env, key := range map[string]string{
		"PUTALLKV_STORE_SHARDS=100":        "store.shards",
		"PUTALLKV_LIMITS_MAX_KEY_BYTES=-1": "limits.max_key_bytes",
		"PUTALLKV_SERVER_ADDR=nonsense":    "server.addr",
	} {
		cmd := exec.Command(server)
		cmd.Env = append(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), key) {
			t.Errorf("%s: exit %v, output %q; want exit 2 naming %s", env, err, out, key)
		}
	}
}

// TestBinaryReloadsLimiterOnSIGHUP starts the server with a bucket of one token, sees a second
// write refused, rewrites the file to lift the limit, sends SIGHUP and sees writes admitted.
func TestBinaryReloadsLimiterOnSIGHUP(t *testing.T) {
	server, bin := buildBinaries(t)
	confFile := filepath.Join(t.TempDir(), "putallkv.yaml")
	p := startBinary(t, server, confFile, baseConf+"limiter:\n  rate: 1\n  burst: 1\n  max_wait: 0s\n")
	cmd, addr, logs := p.cmd, p.rpc, p.logs
	if _, errOut, code := ctl(t, bin, addr, "", "put", "a", "1"); code != 0 {
		t.Fatalf("first put: exit %d %s", code, errOut)
	}
	if _, errOut, code := ctl(t, bin, addr, "", "put", "b", "1"); code != 1 || !strings.Contains(errOut, "RESOURCE_EXHAUSTED") {
		t.Fatalf("second put: exit %d %q; want RESOURCE_EXHAUSTED", code, errOut)
	}
	if err := os.WriteFile(confFile, []byte(baseConf+"limiter:\n  rate: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloaded := false
	for l := range logs {
		if strings.Contains(l, "configuration reloaded") {
			reloaded = strings.Contains(l, "limiter.rate=0")
			break
		}
	}
	if !reloaded {
		t.Fatal("no reload log line with limiter.rate=0 after SIGHUP")
	}
	for i := range 5 {
		if _, errOut, code := ctl(t, bin, addr, "", "put", fmt.Sprint("c", i), "1"); code != 0 {
			t.Fatalf("put after reload: exit %d %s", code, errOut)
		}
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

// TestBinaryDataDirIsLocked starts a server on a data directory, then a second one on the same
// directory, which must exit naming the directory and the first one's pid; `putallctl wal
// repair` refuses too, and `wal check` reads but says a server is running.
func TestBinaryDataDirIsLocked(t *testing.T) {
	server, bin := buildBinaries(t)
	dir := t.TempDir()
	conf := baseConf + fmt.Sprintf("store:\n  data_dir: %s\n", dir)
	p := startBinary(t, server, filepath.Join(t.TempDir(), "first.yaml"), conf)
	go func() {
		for range p.logs {
		}
	}()
	if _, errOut, code := ctl(t, bin, p.rpc, "", "put", "k", "acknowledged"); code != 0 {
		t.Fatalf("put: exit %d %s", code, errOut)
	}
	holder := fmt.Sprintf("pid %d", p.cmd.Process.Pid)

	second := filepath.Join(t.TempDir(), "second.yaml")
	if err := os.WriteFile(second, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a second server that serves is killed
	defer cancel()
	out, err := exec.CommandContext(ctx, server, "-conf", second).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), dir) || !strings.Contains(string(out), holder) {
		t.Fatalf("second server on the same data directory: exit %d (%v)\n%s\nwant exit 1 naming %s and %s", code, err, out, dir, holder)
	}
	if out, code := walCtl(t, bin, "repair", dir); code != 1 || !strings.Contains(out, holder) {
		t.Fatalf("wal repair while the server runs: exit %d\n%s", code, out)
	}
	if out, code := walCtl(t, bin, "check", dir); code != 0 || !strings.Contains(out, "a server is running") || !strings.Contains(out, holder) {
		t.Fatalf("wal check while the server runs: exit %d\n%s", code, out)
	}
	if out, _, code := ctl(t, bin, p.rpc, "", "get", "k"); code != 0 || !strings.Contains(out, "acknowledged") {
		t.Fatalf("get after the second server gave up: exit %d %q", code, out)
	}
}

// gatewayAddr returns the HTTP gateway address in p's (text) start-up line.
func gatewayAddr(t *testing.T, p *proc) string {
	t.Helper()
	m := regexp.MustCompile(`msg="putallkv serving" .*gateway=(\S+)`).FindStringSubmatch(p.early[len(p.early)-1])
	if m == nil {
		t.Fatalf("no gateway address in %q", p.early[len(p.early)-1])
	}
	return m[1]
}

// TestBinaryDiskFullErrorsNameNoPath runs the server under a file size limit (ulimit -f), so the
// log's writes fail as on a full disk: the errors clients get over RPC and HTTP say what failed,
// never the server's paths.
func TestBinaryDiskFullErrorsNameNoPath(t *testing.T) {
	server, bin := buildBinaries(t)
	dir := t.TempDir()
	limited := filepath.Join(t.TempDir(), "putallkv-limited")
	script := fmt.Sprintf("#!/bin/sh\nulimit -f 1024 || exit 3\nexec %q \"$@\"\n", server) // 512 KiB or 1 MiB: the blocks of the shell
	if err := os.WriteFile(limited, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, limited, filepath.Join(t.TempDir(), "putallkv.yaml"),
		baseConf+fmt.Sprintf("store:\n  data_dir: %s\nlimits:\n  max_value_bytes: 131072\n", dir))
	go func() {
		for range p.logs {
		}
	}()
	value := strings.Repeat("v", 64<<10)
	var refused string
	for i := 0; i < 64 && refused == ""; i++ { // at most 4 MiB: well past the limit
		_, errOut, code := ctl(t, bin, p.rpc, "", "--timeout", "2s", "put", fmt.Sprint("big/", i), value)
		if code != 0 && strings.Contains(errOut, "refusing writes") {
			refused = errOut
		}
	}
	if refused == "" {
		t.Fatal("the log never refused a write under the file size limit")
	}
	if strings.Contains(refused, dir) || !strings.Contains(refused, "cannot write a log file") {
		t.Fatalf("RPC error %q names a server path, or not what failed", refused)
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+gatewayAddr(t, p)+"/v1/kv/over-http", strings.NewReader("v"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), dir) ||
		!strings.Contains(string(body), "cannot write a log file") {
		t.Fatalf("HTTP PUT while the log fails: %d %s (%v); want 503 saying what failed, naming no path", resp.StatusCode, body, err)
	}
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

// TestBinaryCorruptSnapshot flips one byte in the middle of the newest snapshot: the server
// starts from the previous snapshot and the log kept after it with every acknowledged write,
// `wal check` reports the snapshot and fails, and `wal repair` moves it aside.
func TestBinaryCorruptSnapshot(t *testing.T) {
	server, bin := buildBinaries(t)
	dir := t.TempDir()
	confFile := filepath.Join(t.TempDir(), "putallkv.yaml")
	conf := baseConf + fmt.Sprintf("store:\n  data_dir: %s\n", dir)
	p := startBinary(t, server, confFile, conf)
	want := map[string]string{}
	for round := range 3 {
		var lines strings.Builder
		for i := range 200 {
			k, v := fmt.Sprint("key/", i+round*50), fmt.Sprint("round ", round)
			want[k] = v
			fmt.Fprintf(&lines, "{\"key\":%q,\"value\":%q}\n", k, v)
		}
		if _, errOut, code := ctl(t, bin, p.rpc, lines.String(), "putall"); code != 0 {
			t.Fatalf("putall: exit %d %s", code, errOut)
		}
		if round < 2 {
			resp, err := http.Post("http://"+p.admin+"/admin/snapshot", "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("snapshot: %s", resp.Status)
			}
		}
	}
	stopBinary(t, p)
	snaps, _ := filepath.Glob(filepath.Join(dir, "*.snap"))
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots after two; want both kept", len(snaps))
	}
	newest := snaps[1]
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(newest, b, 0o600); err != nil {
		t.Fatal(err)
	}

	if out, code := walCtl(t, bin, "check", dir); code != 1 || !strings.Contains(out, "invalid snapshot: "+newest) {
		t.Fatalf("wal check with a corrupt snapshot: exit %d\n%s", code, out)
	}
	p = startBinary(t, server, confFile, conf)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	out, errOut, code := ctl(t, bin, p.rpc, "", append([]string{"getall", "--json"}, keys...)...)
	if code != 0 {
		t.Fatalf("getall after restart: exit %d %s", code, errOut)
	}
	got := decodeResults(t, out)
	if len(got) != len(want) {
		t.Fatalf("getall printed %d results; want %d", len(got), len(want))
	}
	for _, r := range got {
		if v, err := base64.StdEncoding.DecodeString(r.Value); err != nil || r.Code != "OK" || string(v) != want[r.Key] {
			t.Errorf("%s = %+v after restart; want %q", r.Key, r, want[r.Key])
		}
	}
	stopBinary(t, p)
	if out, code := walCtl(t, bin, "repair", dir); code != 0 || !strings.Contains(out, filepath.Base(newest)) {
		t.Fatalf("wal repair: exit %d\n%s", code, out)
	}
}
