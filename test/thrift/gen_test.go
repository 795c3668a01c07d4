package thrift_test

import (
	"flag"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/putallkv/putallkv/internal/gentree"
)

var update = flag.Bool("update", false, "rewrite gen/ with what the Apache Thrift compiler generates from idl/kv.thrift")

// goGenerator is the Apache Thrift compiler's Go generator with the options gen/ is made
// with: imports under this package, no command-line remote client.
const goGenerator = "go:package_prefix=github.com/putallkv/putallkv/test/thrift/gen/,skip_remote"

// TestApacheGeneratedCodeIsCurrent compiles idl/kv.thrift with the Apache Thrift compiler
// (Debian's thrift-compiler) and fails if the committed gen/ differs from its output
// (gofmt-formatted): the Apache Go client is tested with what the compiler makes of the
// IDL today. `go test ./test/thrift -run Generated -update` rewrites gen/.
func TestApacheGeneratedCodeIsCurrent(t *testing.T) {
	needTools(t, compiler)
	root := repoRoot(t)
	out := t.TempDir()
	cmd := exec.Command("thrift", "--gen", goGenerator, "-out", out, filepath.Join(root, "idl", "kv.thrift"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, b)
	}
	got, err := gentree.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range got {
		formatted, err := format.Source(src)
		if err != nil {
			t.Fatalf("gofmt %s: %v", name, err)
		}
		got[name] = formatted
	}
	committed := filepath.Join(root, "test", "thrift", "gen")
	if *update {
		writeTree(t, committed, got)
		return
	}
	want, err := gentree.Read(committed)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range gentree.Diff(want, got, "gen", "run with -update") {
		t.Error(d)
	}
}

// writeTree replaces the files under root with files.
func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
