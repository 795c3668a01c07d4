package thrift_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestPythonExample generates Python bindings from idl/kv.thrift with the Apache Thrift
// compiler and runs examples/python/client.py against the real server: an atomic PutAll,
// GetAll of what it wrote, and a compare-and-set on a stale version that the server refuses
// with VERSION_MISMATCH naming the key's version.
func TestPythonExample(t *testing.T) {
	needTools(t, compiler, pythonThrift)
	root := repoRoot(t)
	gen := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	thriftCmd := exec.CommandContext(ctx, "thrift", "--gen", "py", "-out", gen, filepath.Join(root, "idl", "kv.thrift"))
	if b, err := thriftCmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", thriftCmd, err, b)
	}

	addr := serve(t, testConfig(t))
	cmd := exec.CommandContext(ctx, python, filepath.Join(root, "examples", "python", "client.py"), addr)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+gen, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client.py: %v\n%s", err, out)
	}
	want := `^PutAll applied=2 revision=1
GetAll py/greeting=hello version=1
GetAll py/count=1 version=1
GetAll py/absent not found
CAS VERSION_MISMATCH py/count expected=101 current=1: \S.*
$`
	if !regexp.MustCompile(want).Match(out) {
		t.Fatalf("client.py printed:\n%s\nwant lines matching:\n%s", out, want)
	}
}
