package wal

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSnapshot(t *testing.T, dir string, lsn uint64, body string) string {
	t.Helper()
	path, err := WriteSnapshot(dir, lsn, func(w io.Writer) error {
		_, err := io.WriteString(w, body)
		return err
	})
	if err != nil {
		t.Fatalf("WriteSnapshot(%d): %v", lsn, err)
	}
	return path
}

// latest returns what ReadLatestSnapshot finds: its LSN and body.
func latest(t *testing.T, dir string) (uint64, string) {
	t.Helper()
	lsn, body, err := ReadLatestSnapshot(dir, quiet)
	if err != nil {
		t.Fatalf("ReadLatestSnapshot: %v", err)
	}
	return lsn, string(body)
}

func TestSnapshots(t *testing.T) {
	dir := t.TempDir()
	if lsn, body, err := ReadLatestSnapshot(dir, quiet); lsn != 0 || body != nil || err != nil {
		t.Fatalf("ReadLatestSnapshot(empty dir) = %d, %q, %v; want 0, nil, nil", lsn, body, err)
	}
	if lsn, body, err := ReadLatestSnapshot(filepath.Join(dir, "missing"), quiet); lsn != 0 || body != nil || err != nil {
		t.Fatalf("ReadLatestSnapshot(missing dir) = %d, %q, %v; want 0, nil, nil", lsn, body, err)
	}

	big := strings.Repeat("state ", 100_000) // larger than the write buffer
	writeSnapshot(t, dir, 5, "five")
	p9 := writeSnapshot(t, dir, 9, big)
	writeSnapshot(t, dir, 7, "")
	if filepath.Base(p9) != "00000000000000000009.snap" {
		t.Fatalf("snapshot path %s", p9)
	}
	if lsn, body := latest(t, dir); lsn != 9 || body != big {
		t.Fatalf("latest = %d (%d bytes); want 9 (%d bytes)", lsn, len(body), len(big))
	}

	data, err := os.ReadFile(p9) // a flipped bit in the newest: fall back to the next older one
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(p9, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if lsn, body, err := ReadLatestSnapshot(dir, quiet); lsn != 7 || body == nil || len(body) != 0 || err != nil {
		t.Fatalf("ReadLatestSnapshot with 9 corrupt = %d, %q (nil: %v), %v; want 7, an empty body", lsn, body, body == nil, err)
	}
	if rep, err := Check(dir); err != nil || rep.Snapshots != 2 {
		t.Fatalf("Check = %+v, %v; want 2 valid snapshots", rep, err)
	}

	if err := RemoveSnapshotsBefore(dir, 7); err != nil {
		t.Fatal(err)
	}
	snaps, _ := listSeq(dir, snapSuffix)
	if len(snaps) != 2 || snaps[0].seq != 7 {
		t.Fatalf("after RemoveSnapshotsBefore(7): %v; want 7 and 9", snaps)
	}
}

func TestSnapshotAtomicity(t *testing.T) {
	dir := t.TempDir()
	writeSnapshot(t, dir, 3, "three")
	boom := errors.New("boom")
	if _, err := WriteSnapshot(dir, 4, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("WriteSnapshot with a failing writer: %v; want %v", err, boom)
	}
	leftover := filepath.Join(dir, "00000000000000000008.snap.123.tmp") // as a crash mid-write leaves
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if lsn, body := latest(t, dir); lsn != 3 || body != "three" {
		t.Fatalf("latest = %d %q; want 3 three", lsn, body)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files after a failed write and a cleanup; want only the snapshot", len(entries))
	}
}

func TestSnapshotValidation(t *testing.T) {
	dir := t.TempDir()
	p := writeSnapshot(t, dir, 2, "two")
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		file string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, "00000000000000000002.snap"},
		{"too short", func(b []byte) []byte { return b[:10] }, "00000000000000000002.snap"},
		{"renamed", func(b []byte) []byte { return b }, "00000000000000000003.snap"},
		{"bad version", func(b []byte) []byte { b[4]++; return b }, "00000000000000000002.snap"},
		{"bad length", func(b []byte) []byte { b[len(b)-16]++; return b }, "00000000000000000002.snap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, tc.file), tc.edit(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			if lsn, body := latest(t, d); lsn != 0 || body != "" {
				t.Fatalf("an invalid snapshot was returned: %d %q", lsn, body)
			}
		})
	}
}
