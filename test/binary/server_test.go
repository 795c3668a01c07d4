package binary

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/testnet"
)

// TestBinaryServesAndStopsCleanly builds the real binaries, starts the server, drives it with
// putallctl (a PutAll of 16 keys read back with GetAll at the versions it returned) and stops
// it with SIGTERM.
func TestBinaryServesAndStopsCleanly(t *testing.T) {
	server, bin := binaries(t)
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

// TestBinaryReloadsLimiterOnSIGHUP starts the server with a bucket of one token, sees a second
// write refused, rewrites the file to lift the limit, sends SIGHUP and sees writes admitted.
func TestBinaryReloadsLimiterOnSIGHUP(t *testing.T) {
	server, bin := binaries(t)
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

// TestBinaryReloadNamesRestartKeys changes keys that apply at once and keys that need a
// restart, sends SIGHUP, and checks the log names exactly the second kind.
func TestBinaryReloadNamesRestartKeys(t *testing.T) {
	server, _ := binaries(t)
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

// TestBinaryGatewayTierProbesAndReload runs a gateway tier in front of an address where
// nothing listens: its admin /readyz says why it is not ready, and SIGHUP reloads it (a
// tier has no limiter to apply the reload to).
func TestBinaryGatewayTierProbesAndReload(t *testing.T) {
	server, _ := binaries(t)
	dead := testnet.DeadAddr(t)
	conf := "admin:\n  addr: 127.0.0.1:0\ngateway:\n  addr: 127.0.0.1:0\n"
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), conf, "gateway", "-upstream", dead)
	code, _, body := testnet.Do(t, "GET", "http://"+p.admin+"/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "connection refused") {
		t.Errorf("admin /readyz = %d %s; want 503 saying the connection was refused", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "configuration reloaded")
	if got := strings.TrimSpace(testnet.Get(t, "http://"+p.admin+"/healthz")); got != `{"status":"ok"}` {
		t.Errorf("after SIGHUP /healthz = %q", got)
	}
}

// TestBinaryAdminProbesWithoutGateway checks /healthz and /readyz on the admin port of a
// server whose HTTP gateway is off.
func TestBinaryAdminProbesWithoutGateway(t *testing.T) {
	server, _ := binaries(t)
	conf := "server:\n  addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\ngateway:\n  addr: \"\"\n"
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), conf)
	for path, want := range map[string]string{"/healthz": `{"status":"ok"}`, "/readyz": `{"status":"ready"}`} {
		if got := strings.TrimSpace(testnet.Get(t, "http://"+p.admin+path)); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}
}

// TestBinaryAdminReachableWhenPortsFull runs the real binary with an open-file limit of 256 and
// opens 200 idle connections to each of the RPC and HTTP ports, more than the process has
// descriptors for: the caps refuse what is over them, and the admin port still answers.
func TestBinaryAdminReachableWhenPortsFull(t *testing.T) {
	server, _ := binaries(t)
	dir := t.TempDir()
	conf := "server:\n  addr: 127.0.0.1:0\n  shutdown_timeout: 5s\n  max_connections: 60\n" +
		"admin:\n  addr: 127.0.0.1:0\n  max_connections: 8\n" +
		"gateway:\n  addr: 127.0.0.1:0\n  max_connections: 60\n"
	file := filepath.Join(dir, "putallkv.yaml")
	cmd := exec.Command("sh", "-c", `ulimit -n 256 && exec "$0" -conf "$1"`, server, file)
	p := startCommand(t, cmd, file, conf)
	if p.gw == "" {
		t.Fatal("the server logged no gateway address")
	}
	testnet.Hold(t, p.rpc, 200)
	testnet.Hold(t, p.gw, 200)

	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	resp, err := client.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("admin port with the data ports full: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin /metrics: %d %s", resp.StatusCode, b)
	}
}

// TestBinaryLogsOnlyJSON runs the server with log.format json at level debug, makes Kitex and
// Hertz log errors of their own (a request that is not Thrift, a request that is not HTTP),
// stops it, and checks every line it wrote is a JSON object, the frameworks' among them.
func TestBinaryLogsOnlyJSON(t *testing.T) {
	server, bin := binaries(t)
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
