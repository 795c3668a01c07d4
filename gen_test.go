package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/putallkv/putallkv/internal/gentree"
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
	committed, err := gentree.Read("kitex_gen")
	if err != nil {
		t.Fatal(err)
	}
	generated, err := gentree.Read(filepath.Join(out, "kitex_gen"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range gentree.Diff(committed, generated, "kitex_gen", "run script/gen.sh") {
		t.Error(d)
	}
}
