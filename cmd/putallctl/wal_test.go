package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/pkg/wal"
)

func walRun(args ...string) (int, string) {
	var out, errOut bytes.Buffer
	code := run(append([]string{"wal"}, args...), nil, &out, &errOut)
	return code, out.String() + errOut.String()
}

// flipByte flips a bit in the middle of the file at path.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// newLog writes 20 records into a new log in a new directory and returns the log, still open.
func newLog(t *testing.T) (string, *wal.Log) {
	t.Helper()
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
	return dir, l
}

func TestWALCheckAndRepair(t *testing.T) {
	dir, l := newLog(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out := walRun("check", dir); code != 0 || !strings.Contains(out, "20 records") || !strings.Contains(out, "ok") {
		t.Fatalf("check of a sound log: exit %d\n%s", code, out)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	flipByte(t, segs[0])
	if code, out := walRun("check", dir); code != 1 || !strings.Contains(out, "corruption:") || !strings.Contains(out, "a repair cuts") {
		t.Fatalf("check of a corrupt log: exit %d\n%s", code, out)
	}
	code, out := walRun("repair", dir)
	if code != 0 || !strings.Contains(out, "moved aside into "+filepath.Join(dir, "repair-")) ||
		!strings.Contains(out, "intact record(s) cut off the end") || !strings.Contains(out, "to undo, with the server stopped: cp -p") ||
		!strings.HasSuffix(out, "ok\n") {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	if code, out := walRun("check", dir); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("check after repair: exit %d\n%s", code, out)
	}
	if code, out := walRun("repair", dir); code != 0 || !strings.Contains(out, "nothing to repair") {
		t.Fatalf("repair of a sound log: exit %d\n%s", code, out)
	}
	if code, _ := walRun("fix", dir); code != exitUsage {
		t.Fatalf("unknown wal command: exit %d", code)
	}
}

func TestWALCheckVerifiesSnapshots(t *testing.T) {
	dir, l := newLog(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := wal.WriteSnapshot(dir, 20, func(w io.Writer) error { _, err := io.WriteString(w, strings.Repeat("state", 100)); return err })
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, snap)
	if code, out := walRun("check", dir); code != 1 || !strings.Contains(out, "invalid snapshot: "+snap+": invalid snapshot: checksum mismatch") {
		t.Fatalf("check with a corrupt snapshot: exit %d\n%s", code, out)
	}
	if code, out := walRun("repair", dir); code != 0 || !strings.Contains(out, filepath.Base(snap)) || !strings.HasSuffix(out, "ok\n") {
		t.Fatalf("repair of a corrupt snapshot: exit %d\n%s", code, out)
	}
}

func TestWALRepairRefusesWhileInUse(t *testing.T) {
	dir, l := newLog(t)
	defer l.Close()
	pid := fmt.Sprintf("pid %d", os.Getpid())
	if code, out := walRun("repair", dir); code != 1 || !strings.Contains(out, dir) || !strings.Contains(out, pid) {
		t.Fatalf("repair while the log is open: exit %d\n%s", code, out)
	}
	if code, out := walRun("check", dir); code != 0 || !strings.Contains(out, "a server is running") || !strings.Contains(out, pid) {
		t.Fatalf("check while the log is open: exit %d\n%s", code, out)
	}
}
