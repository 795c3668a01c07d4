package thrift_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/auth/authtest"
)

// exampleOutput is what examples/python/client.py prints against an empty store.
const exampleOutput = `^PutAll applied=2 revision=1
GetAll py/greeting=hello version=1
GetAll py/count=1 version=1
GetAll py/absent not found
Scan py/ 2 keys: py/count py/greeting
CAS VERSION_MISMATCH py/count expected=101 current=1: \S.*
$`

// TestPythonExample runs examples/python/client.py over framed binary against the real
// server: an atomic PutAll, GetAll of what it wrote, a Scan of it, and a compare-and-set on a stale
// version that the server refuses with VERSION_MISMATCH naming the key's version.
func TestPythonExample(t *testing.T) {
	out, err := runPythonExample(t, serve(t, testConfig(t)), "")
	if err != nil {
		t.Fatalf("client.py: %v\n%s", err, out)
	}
	wantOutput(t, out, exampleOutput)
}

// TestPythonExampleAuthenticatesOverTTHeader runs the example against a server with tokens:
// with a token, sent in TTHeader by examples/python/ttheader.py, the calls pass as they do
// without tokens; with a token of too low a role they are refused PERMISSION_DENIED, and
// without one (plain framed Thrift) UNAUTHENTICATED.
func TestPythonExampleAuthenticatesOverTTHeader(t *testing.T) {
	tk := authtest.New(t)
	cfg := testConfig(t)
	cfg.Auth.TokenFile = tk.File
	addr := serve(t, cfg)
	for _, tt := range []struct {
		name, token, want string
	}{
		{"no token", "", `^error UNAUTHENTICATED: \S.*\n$`},
		{"read token", tk.Read, `^error PERMISSION_DENIED: \S.*\n$`},
		{"write token", tk.Write, exampleOutput},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runPythonExample(t, addr, tt.token)
			if tt.token == tk.Write && err != nil {
				t.Fatalf("client.py: %v\n%s", err, out)
			}
			if tt.token != tk.Write && err == nil {
				t.Fatalf("client.py exited 0, printing:\n%s", out)
			}
			wantOutput(t, out, tt.want)
		})
	}
}

// TestPythonTTHeaderSendsTheDeadline checks that the deadline examples/python/ttheader.py
// sends bounds the call on the server: a write that would wait about 5 s for admission, sent
// with a 1 s deadline, is refused at once rather than waited for (testdata/deadline.py).
func TestPythonTTHeaderSendsTheDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 1, 5, time.Hour
	out, err := runPython(t, filepath.Join("testdata", "deadline.py"), serve(t, cfg), "")
	if err != nil {
		t.Fatalf("deadline.py: %v\n%s", err, out)
	}
	wantOutput(t, out, "^first applied=5\nsecond RESOURCE_EXHAUSTED retry_after_ms=[1-9][0-9]*\n$")
}

// runPythonExample runs examples/python/client.py against addr with PUTALLKV_TOKEN set to
// token, and returns what it printed.
func runPythonExample(t *testing.T, addr, token string) ([]byte, error) {
	t.Helper()
	return runPython(t, filepath.Join(repoRoot(t), "examples", "python", "client.py"), addr, token)
}

// runPython generates Python bindings from idl/kv.thrift with the Apache Thrift compiler and
// runs script against addr, with the bindings and examples/python on its path and
// PUTALLKV_TOKEN set to token; it returns what the script printed.
func runPython(t *testing.T, script, addr, token string) ([]byte, error) {
	t.Helper()
	needTools(t, compiler, pythonThrift)
	root := repoRoot(t)
	gen := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	thriftCmd := exec.CommandContext(ctx, "thrift", "--gen", "py", "-out", gen, filepath.Join(root, "idl", "kv.thrift"))
	if b, err := thriftCmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", thriftCmd, err, b)
	}
	cmd := exec.CommandContext(ctx, python, script, addr)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+gen+string(os.PathListSeparator)+filepath.Join(root, "examples", "python"),
		"PYTHONDONTWRITEBYTECODE=1", "PUTALLKV_TOKEN="+token)
	return cmd.CombinedOutput()
}

// wantOutput fails unless out matches the regular expression want.
func wantOutput(t *testing.T, out []byte, want string) {
	t.Helper()
	if !regexp.MustCompile(want).Match(out) {
		t.Fatalf("client.py printed:\n%s\nwant lines matching:\n%s", out, want)
	}
}
