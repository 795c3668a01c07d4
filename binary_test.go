package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
var servingLine = regexp.MustCompile(`msg="putallkv serving" rpc=(\S*) admin=(\S+)|"msg":"putallkv serving","rpc":"([^"]*)","admin":"([^"]+)"`)

// baseConf puts the server on ephemeral loopback ports.
const baseConf = "server:\n  addr: 127.0.0.1:0\n  shutdown_timeout: 5s\nadmin:\n  addr: 127.0.0.1:0\ngateway:\n  addr: 127.0.0.1:0\n"

// proc is a started server binary.
type proc struct {
	cmd   *exec.Cmd
	rpc   string      // its RPC address ("" for a gateway tier)
	admin string      // its admin address
	early []string    // its log up to and including the serving line
	logs  chan string // the rest of its log, closed when it exits
}

// startBinary starts the server binary with confFile holding conf and returns it once it serves.
// args go before -conf (e.g. "gateway").
func startBinary(t *testing.T, server, confFile, conf string, args ...string) *proc {
	t.Helper()
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(server, append(args, "-conf", confFile)...)
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
			p.rpc, p.admin = strings.Trim(m[1]+m[3], `"`), m[2]+m[4]
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
