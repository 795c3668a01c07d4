package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"putallkv/pkg/wal"
)

func TestWALCheckAndRepair(t *testing.T) {
	dir := t.TempDir()
	l, err := wal.Open(dir, wal.Options{Sync: wal.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := l.Append([]byte(fmt.Sprint("record ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	walRun := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"wal"}, args...), nil, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := walRun("check", dir); code != 0 || !strings.Contains(out, "20 records") || !strings.Contains(out, "ok") {
		t.Fatalf("check of a sound log: exit %d\n%s", code, out)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := walRun("check", dir); code != 1 || !strings.Contains(out, "corruption:") {
		t.Fatalf("check of a corrupt log: exit %d\n%s", code, out)
	}
	if code, out := walRun("repair", dir); code != 0 || !strings.Contains(out, "repaired corruption") {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	if code, out := walRun("check", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("check after repair: exit %d\n%s", code, out)
	}
	if code, _ := walRun("fix", dir); code != exitUsage {
		t.Fatalf("unknown wal command: exit %d", code)
	}
}
