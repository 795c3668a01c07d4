package gentree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadAndDiff checks that Read sees a tree's files by relative path and that Diff names
// a changed, a missing and an extra file, and nothing for equal trees.
func TestReadAndDiff(t *testing.T) {
	root := t.TempDir()
	for name, content := range map[string]string{"a.go": "a", "sub/b.go": "b"} {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := Read(root)
	if err != nil || len(committed) != 2 || string(committed[filepath.Join("sub", "b.go")]) != "b" {
		t.Fatalf("Read = %v, %v", committed, err)
	}
	if d := Diff(committed, committed, "gen", "regenerate"); len(d) != 0 {
		t.Fatalf("equal trees: %v", d)
	}
	generated := map[string][]byte{"a.go": []byte("A"), "c.go": []byte("c")}
	d := strings.Join(Diff(committed, generated, "gen", "regenerate"), "\n")
	for _, want := range []string{"gen/a.go differs", "gen/c.go is generated but not committed", "gen/sub/b.go is committed but no longer generated"} {
		if !strings.Contains(d, want) {
			t.Errorf("Diff says %q; want it to say %q", d, want)
		}
	}
}
