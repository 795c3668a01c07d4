package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wantBuild returns what -version should print after the program name: build.sh's stamps
// (git describe and the commit) and the Go version, or "" when git cannot say.
func wantBuild(t *testing.T) string {
	t.Helper()
	describe, err1 := exec.Command("git", "describe", "--always", "--dirty").Output()
	commit, err2 := exec.Command("git", "rev-parse", "HEAD").Output()
	if err1 != nil || err2 != nil {
		return ""
	}
	c := strings.TrimSpace(string(commit))
	if exec.Command("git", "diff", "--quiet", "HEAD").Run() != nil {
		c += "-dirty"
	}
	return fmt.Sprintf("%s (commit %s, %s)", strings.TrimSpace(string(describe)), c, runtime.Version())
}

// TestBinaryVersion checks that `putallkv -version`, `putallctl version` and the
// putallkv_build_info metric carry the stamps build.sh gives the binaries.
func TestBinaryVersion(t *testing.T) {
	server, bin := buildBinaries(t)
	want := wantBuild(t)
	for name, cmd := range map[string]*exec.Cmd{
		"putallkv":  exec.Command(server, "-version"),
		"putallctl": exec.Command(bin, "version"),
	} {
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		got := strings.TrimSpace(string(out))
		if !strings.HasPrefix(got, name+" ") || !strings.HasSuffix(got, ", "+runtime.Version()+")") ||
			(want != "" && got != name+" "+want) {
			t.Errorf("%v printed %q, want %q", cmd.Args, got, name+" "+want)
		}
	}

	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), baseConf)
	var line string
	for _, l := range strings.Split(httpGet(t, "http://"+p.admin+"/metrics"), "\n") {
		if strings.HasPrefix(l, "putallkv_build_info{") {
			line = l
		}
	}
	if !strings.Contains(line, `goversion="`+runtime.Version()+`"`) || !strings.HasSuffix(line, "} 1") {
		t.Fatalf("/metrics build_info line %q", line)
	}
	if want != "" {
		version, rest, _ := strings.Cut(want, " (commit ")
		commit, _, _ := strings.Cut(rest, ", ")
		for _, label := range []string{`version="` + version + `"`, `commit="` + commit + `"`} {
			if !strings.Contains(line, label) {
				t.Errorf("/metrics build_info line %q lacks %s", line, label)
			}
		}
	}
}

// TestBinaryHelp checks that -h names the gateway subcommand, the flags, and every
// configuration key with its environment variable.
func TestBinaryHelp(t *testing.T) {
	server, _ := buildBinaries(t)
	out, err := exec.Command(server, "-h").Output()
	if err != nil {
		t.Fatalf("putallkv -h: %v", err)
	}
	for _, want := range []string{
		"putallkv gateway -upstream HOST:PORT", "-conf file", "-version",
		"server.addr", "PUTALLKV_SERVER_ADDR", "log.format", "PUTALLKV_LOG_FORMAT",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("putallkv -h does not mention %q:\n%s", want, out)
		}
	}
}

// TestBinaryConfigTypeError checks that a value of the wrong type in the file is refused
// with its key and the form it should take.
func TestBinaryConfigTypeError(t *testing.T) {
	server, _ := buildBinaries(t)
	file := filepath.Join(t.TempDir(), "putallkv.yaml")
	if err := os.WriteFile(file, []byte("server:\n  shutdown_timeout: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(server, "-conf", file).CombinedOutput()
	var ee *exec.ExitError
	want := `line 2: server.shutdown_timeout: want a duration such as 10s or 1m30s, got "10"`
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), want) {
		t.Errorf("exit %v, output %q; want exit 2 and %q", err, out, want)
	}
}

// TestBinaryAdminProbesWithoutGateway checks /healthz and /readyz on the admin port of a
// server whose HTTP gateway is off.
func TestBinaryAdminProbesWithoutGateway(t *testing.T) {
	server, _ := buildBinaries(t)
	conf := "server:\n  addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\ngateway:\n  addr: \"\"\n"
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), conf)
	for path, want := range map[string]string{"/healthz": `{"status":"ok"}`, "/readyz": `{"status":"ready"}`} {
		if got := strings.TrimSpace(httpGet(t, "http://"+p.admin+path)); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}
}

// TestBinaryGatewayTierProbesAndReload runs a gateway tier in front of an address where
// nothing listens: its admin /readyz says why it is not ready, and SIGHUP reloads it (a
// tier has no limiter to apply the reload to).
func TestBinaryGatewayTierProbesAndReload(t *testing.T) {
	server, _ := buildBinaries(t)
	dead := deadAddr(t)
	conf := "admin:\n  addr: 127.0.0.1:0\ngateway:\n  addr: 127.0.0.1:0\n"
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), conf, "gateway", "-upstream", dead)
	code, _, body := httpDo(t, "GET", "http://"+p.admin+"/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "connection refused") {
		t.Errorf("admin /readyz = %d %s; want 503 saying the connection was refused", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "configuration reloaded")
	if got := strings.TrimSpace(httpGet(t, "http://"+p.admin+"/healthz")); got != `{"status":"ok"}` {
		t.Errorf("after SIGHUP /healthz = %q", got)
	}
}

// deadAddr returns a loopback address where nothing listens: a port just freed.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
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

// TestBinaryReloadNamesRestartKeys changes keys that apply at once and keys that need a
// restart, sends SIGHUP, and checks the log names exactly the second kind.
func TestBinaryReloadNamesRestartKeys(t *testing.T) {
	server, _ := buildBinaries(t)
	file := filepath.Join(t.TempDir(), "putallkv.yaml")
	p := startBinary(t, server, file, baseConf)
	changed := baseConf + "store:\n  shards: 8\nlimiter:\n  rate: 5\nlog:\n  level: debug\n"
	if err := os.WriteFile(file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if l := waitLog(t, p, "configuration reloaded"); !strings.Contains(l, `changed="[store.shards limiter.rate log.level]"`) {
		t.Errorf("reload line %q does not list the changed keys", l)
	}
	if l := waitLog(t, p, "after a restart"); !strings.Contains(l, `keys="[store.shards log.level]"`) {
		t.Errorf("restart line %q, want it to name store.shards and log.level only", l)
	}
}

// TestBinaryLogsOnlyJSON runs the server with log.format json at level debug, makes Kitex and
// Hertz log errors of their own (a request that is not Thrift, a request that is not HTTP),
// stops it, and checks every line it wrote is a JSON object, the frameworks' among them.
func TestBinaryLogsOnlyJSON(t *testing.T) {
	server, bin := buildBinaries(t)
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), baseConf+"log:\n  format: json\n  level: debug\n")
	var gateway struct {
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(p.early[len(p.early)-1]), &gateway); err != nil || gateway.Gateway == "" {
		t.Fatalf("serving line %q: %v", p.early[len(p.early)-1], err)
	}
	for addr, garbage := range map[string]string{p.rpc: "GET / HTTP/1.1\r\n\r\n", gateway.Gateway: "NOT HTTP \x00\r\n\r\n"} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte(garbage)); err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Read(make([]byte, 512)) // the answer, or the close, comes after the server logged
		conn.Close()
	}
	if _, errOut, code := ctl(t, bin, p.rpc, "", "put", "k", "v"); code != 0 {
		t.Fatalf("put: exit %d %s", code, errOut)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	lines := p.early
	for l := range p.logs {
		lines = append(lines, l)
	}
	components := map[string]int{}
	for _, l := range lines {
		var rec struct {
			Msg       string `json:"msg"`
			Component string `json:"component"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Msg == "" {
			t.Errorf("not a JSON log line: %q", l)
		}
		components[rec.Component]++
	}
	if components["kitex"] == 0 || components["hertz"] == 0 {
		t.Errorf("lines per component %v: want Kitex's and Hertz's own lines among them", components)
	}
}

// TestBinaryCtlErrors checks putallctl's messages for two slips: a port where nothing
// listens, and a timeout without a unit.
func TestBinaryCtlErrors(t *testing.T) {
	_, bin := buildBinaries(t)
	if _, errOut, code := ctl(t, bin, deadAddr(t), "", "get", "k"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Errorf("get from a dead port: exit %d, stderr %q; want exit 1 saying connection refused", code, errOut)
	}
	if _, errOut, code := ctl(t, bin, deadAddr(t), "", "--timeout", "5", "get", "k"); code != 2 || !strings.Contains(errOut, "did you mean 5s?") {
		t.Errorf("--timeout 5: exit %d, stderr %q; want exit 2 suggesting 5s", code, errOut)
	}
}
