package binary

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
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
	server, bin := binaries(t)
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
	for _, l := range strings.Split(testnet.Get(t, "http://"+p.admin+"/metrics"), "\n") {
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
	server, _ := binaries(t)
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

// TestBinaryRefusesBadConfig checks that an invalid value stops start-up with a message naming
// the key.
func TestBinaryRefusesBadConfig(t *testing.T) {
	server, _ := binaries(t)
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

// TestBinaryConfigTypeError checks that a value of the wrong type in the file is refused
// with its key and the form it should take.
func TestBinaryConfigTypeError(t *testing.T) {
	server, _ := binaries(t)
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

// TestBinaryCtlErrors checks putallctl's messages for two slips: a port where nothing
// listens, and a timeout without a unit.
func TestBinaryCtlErrors(t *testing.T) {
	_, bin := binaries(t)
	if _, errOut, code := ctl(t, bin, testnet.DeadAddr(t), "", "get", "k"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Errorf("get from a dead port: exit %d, stderr %q; want exit 1 saying connection refused", code, errOut)
	}
	if _, errOut, code := ctl(t, bin, testnet.DeadAddr(t), "", "--timeout", "5", "get", "k"); code != 2 || !strings.Contains(errOut, "did you mean 5s?") {
		t.Errorf("--timeout 5: exit %d, stderr %q; want exit 2 suggesting 5s", code, errOut)
	}
}
