package binary

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/testnet"
)

// TestBinaryDataDirIsLocked starts a server on a data directory, then a second one on the same
// directory, which must exit naming the directory and the first one's pid; `putallctl wal
// repair` refuses too, and `wal check` reads but says a server is running.
func TestBinaryDataDirIsLocked(t *testing.T) {
	server, bin := binaries(t)
	dir := t.TempDir()
	conf := baseConf + fmt.Sprintf("store:\n  data_dir: %s\n", dir)
	p := startBinary(t, server, filepath.Join(t.TempDir(), "first.yaml"), conf)
	discardLogs(p)
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

// TestBinaryDiskFullErrorsNameNoPath runs the server under a file size limit (ulimit -f), so the
// log's writes fail as on a full disk: the errors clients get over RPC and HTTP say what failed,
// never the server's paths; putallkv_wal_failing shows it.
func TestBinaryDiskFullErrorsNameNoPath(t *testing.T) {
	server, bin := binaries(t)
	dir := t.TempDir()
	limited := filepath.Join(t.TempDir(), "putallkv-limited")
	script := fmt.Sprintf("#!/bin/sh\nulimit -f 1024 || exit 3\nexec %q \"$@\"\n", server) // 512 KiB or 1 MiB: the blocks of the shell
	if err := os.WriteFile(limited, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, limited, filepath.Join(t.TempDir(), "putallkv.yaml"),
		baseConf+fmt.Sprintf("store:\n  data_dir: %s\nlimits:\n  max_value_bytes: 131072\n", dir))
	discardLogs(p)
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
	if page := testnet.Get(t, "http://"+p.admin+"/metrics"); !strings.Contains(page, "\nputallkv_wal_failing 1\n") {
		t.Error("/metrics lacks putallkv_wal_failing 1 while the log refuses writes")
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+p.gw+"/v1/kv/over-http", strings.NewReader("v"))
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

// TestBinaryCorruptSnapshot flips one byte in the middle of the newest snapshot: the server
// starts from the previous snapshot and the log kept after it with every acknowledged write,
// `wal check` reports the snapshot and fails, and `wal repair` moves it aside.
func TestBinaryCorruptSnapshot(t *testing.T) {
	server, bin := binaries(t)
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
