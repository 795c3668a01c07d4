package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	appendAll(t, l, [][]byte{[]byte("acknowledged")})

	pid := os.Getpid()
	_, err := Open(dir, Options{Logger: quiet})
	var le *LockedError
	if !errors.As(err, &le) || le.Dir != dir || le.PID != pid {
		t.Fatalf("second Open: %v; want a *LockedError for %s held by pid %d", err, dir, pid)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("error %q does not name the directory and the holder's pid", msg)
	}
	if _, err := Repair(dir); !errors.As(err, &le) || le.PID != pid {
		t.Fatalf("Repair while the log is open: %v; want a *LockedError", err)
	}
	if rep, err := Check(dir); err != nil || !rep.Held || rep.Holder != pid || rep.Records != 1 {
		t.Fatalf("Check while the log is open = %+v, %v; want it read, held by pid %d", rep, err, pid)
	}

	mustClose(t, l)
	if rep, err := Check(dir); err != nil || rep.Held {
		t.Fatalf("Check after Close = %+v, %v; want the lock free", rep, err)
	}
	l = mustOpen(t, dir, Options{}) // Close released it
	defer mustClose(t, l)
	equalRecords(t, "after reopening", replayAll(t, l, 0), [][]byte{[]byte("acknowledged")})
}

// TestFailedOpenReleasesTheLock: an Open that finds the log corrupt leaves the directory to Repair.
func TestFailedOpenReleasesTheLock(t *testing.T) {
	dir := buildLog(t, Options{}, [][]byte{[]byte("one"), []byte("two")})
	seg := segmentFiles(t, dir)[0]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[segHeaderSize+frameHeaderSize] ^= 1 // the first record's payload
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptionError
	if _, err := Open(dir, Options{Logger: quiet}); !errors.As(err, &ce) {
		t.Fatalf("Open: %v; want a *CorruptionError", err)
	}
	if _, err := Repair(dir); err != nil {
		t.Fatalf("Repair after a failed Open: %v", err)
	}
}

// TestFileModes: what the log, snapshots and a repair create is private to the owner.
func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l := mustOpen(t, dir, Options{SegmentBytes: 256})
	appendAll(t, l, randomRecords(newRand(t), 10, 100))
	if _, err := WriteSnapshot(dir, l.LastLSN(), func(w io.Writer) error { _, err := io.WriteString(w, "state"); return err }); err != nil {
		t.Fatal(err)
	}
	mustClose(t, l)
	seg := segmentFiles(t, dir)[0]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[segHeaderSize+frameHeaderSize] ^= 1
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := Repair(dir); err != nil || rep.Moved == nil {
		t.Fatalf("Repair = %+v, %v; want a repair folder", rep, err)
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if e.IsDir() {
			want = 0o700 | fs.ModeDir
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v; want %v", path, fi.Mode(), want)
		}
		seen[strings.TrimLeft(filepath.Ext(path), ".")+map[bool]string{true: "dir"}[e.IsDir()]] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"dir", "wal", "snap", "txt"} {
		if !seen[kind] {
			t.Errorf("no %s checked; saw %v", kind, seen)
		}
	}
}
