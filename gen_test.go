package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates kitex_gen/ with script/gen.sh into a scratch
// directory and fails if the committed code differs: the IDL is the one source of the API.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kitex tool")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "script/gen.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("script/gen.sh: %v\n%s", err, b)
	}
	want := readTree(t, "kitex_gen")
	got := readTree(t, filepath.Join(out, "kitex_gen"))
	for name, content := range got {
		if committed, ok := want[name]; !ok {
			t.Errorf("gen.sh makes %s, which is not committed", name)
		} else if !bytes.Equal(committed, content) {
			t.Errorf("kitex_gen/%s differs from what script/gen.sh generates from idl/; run script/gen.sh", name)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("kitex_gen/%s is committed but gen.sh no longer makes it", name)
		}
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
