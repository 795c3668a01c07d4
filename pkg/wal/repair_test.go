package wal

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readDir returns the contents of the regular files of dir by name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if files[e.Name()], err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	return files
}

// flipPayload flips a bit in the payload of the record at index i (0-based) of segment path.
func flipPayload(t *testing.T, path string, recs [][]byte, first uint64, i int) {
	t.Helper()
	off := int64(segHeaderSize)
	for _, r := range recs[first-1 : first-1+uint64(i)] {
		off += frameSize(r)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off+frameHeaderSize] ^= 0x08
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// undo copies the files a repair moved aside back into dir, as the operator would by hand.
func undo(t *testing.T, dir string, m *Moved) {
	t.Helper()
	for _, name := range m.Files {
		b, err := os.ReadFile(filepath.Join(m.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRepairMovesAsideWhatItCuts flips one bit in a middle segment: Repair cuts the log there but
// keeps everything it cut, byte for byte, counts the records, and copying back undoes it.
func TestRepairMovesAsideWhatItCuts(t *testing.T) {
	recs := randomRecords(newRand(t), 60, 300)
	for i := range recs {
		recs[i] = append(recs[i], 'x')
	}
	dir := buildLog(t, Options{SegmentBytes: 1 << 10}, recs)
	segs := segmentFiles(t, dir)
	if len(segs) < 6 {
		t.Fatalf("%d segments; want at least 6", len(segs))
	}
	k := len(segs) / 2
	first, _ := parseSeq(filepath.Base(segs[k]), ".wal")
	flipPayload(t, segs[k], recs, first, 1) // the segment's second record, LSN first+1
	damaged := readDir(t, dir)
	kept := first                          // LSNs 1..first stay
	cut := uint64(len(recs)) - (first + 1) // the intact records after the damaged one

	rep, err := Repair(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Moved
	if rep.Corruption == nil || rep.Corruption.Records != cut || m == nil || m.Records != cut || m.Superseded != 0 {
		t.Fatalf("Repair = %+v (damage %+v, moved %+v); want %d intact records cut", rep, rep.Corruption, m, cut)
	}
	if filepath.Dir(m.Dir) != dir || !strings.HasPrefix(filepath.Base(m.Dir), "repair-") {
		t.Fatalf("moved into %s; want a repair-<time> folder in %s", m.Dir, dir)
	}
	wantFiles := []string{markerName} // the marker changed first, then later segments, newest first, then the cut one
	for i := len(segs) - 1; i >= k; i-- {
		wantFiles = append(wantFiles, filepath.Base(segs[i]))
	}
	if !slices.Equal(m.Files, wantFiles) {
		t.Fatalf("moved %v; want %v", m.Files, wantFiles)
	}
	for _, name := range m.Files {
		if b, err := os.ReadFile(filepath.Join(m.Dir, name)); err != nil || !bytes.Equal(b, damaged[name]) {
			t.Fatalf("%s in the repair folder differs from the original (%v)", name, err)
		}
	}
	note, err := os.ReadFile(filepath.Join(m.Dir, "REPAIR.txt"))
	if err != nil || !strings.Contains(string(note), m.UndoCommand(dir)) || !strings.Contains(string(note), filepath.Base(segs[k])) {
		t.Fatalf("REPAIR.txt = %q, %v; want what was done and the undo command", note, err)
	}
	if rep, err := Check(dir); err != nil || !rep.Sound() || rep.TornTail != nil || rep.Records != kept {
		t.Fatalf("Check after Repair = %+v, %v; want a sound log of %d records", rep, err, kept)
	}

	undo(t, dir, m)
	if got := readDir(t, dir); !maps.EqualFunc(got, damaged, bytes.Equal) {
		t.Fatal("copying the repair folder back does not restore the directory as it was")
	}
	if rep, err := Check(dir); err != nil || rep.Corruption == nil || rep.Records != kept {
		t.Fatalf("Check after undoing = %+v, %v; want the corruption back", rep, err)
	}
	if rep, err := Repair(dir); err != nil || rep.Moved == nil || rep.Moved.Dir == m.Dir {
		t.Fatalf("second Repair = %+v, %v; want a folder of its own", rep, err)
	}
	recoverAndExtend(t, dir, recs[:kept], false)
}

// TestRepairDropsTheStartASnapshotHolds: damage in a segment the newest snapshot already holds is
// repaired by moving the start of the log aside, which loses nothing.
func TestRepairDropsTheStartASnapshotHolds(t *testing.T) {
	recs := randomRecords(newRand(t), 60, 300)
	for i := range recs {
		recs[i] = append(recs[i], 'x')
	}
	dir := buildLog(t, Options{SegmentBytes: 1 << 10}, recs)
	segs := segmentFiles(t, dir)
	third, _ := parseSeq(filepath.Base(segs[3]), ".wal")
	snapLSN := third + 1 // the snapshot holds segments 0..2 and a record of segment 3
	writeSnapshot(t, dir, snapLSN, "state")
	second, _ := parseSeq(filepath.Base(segs[1]), ".wal")
	flipPayload(t, segs[1], recs, second, 0)
	superseded, _ := parseSeq(filepath.Base(segs[2]), ".wal") // the records of segments 0 and 1
	superseded -= 2                                           // LSNs start at 1; one is damaged

	if rep, err := Check(dir); err != nil || rep.Corruption == nil || !strings.Contains(rep.Corruption.Repair, "nothing is lost") {
		t.Fatalf("Check = %+v, %v; want corruption that a repair fixes losing nothing", rep, err)
	}
	rep, err := Repair(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Moved; m == nil || m.Records != 0 || m.Superseded != superseded ||
		!slices.Equal(m.Files, []string{filepath.Base(segs[0]), filepath.Base(segs[1])}) {
		t.Fatalf("Repair moved %+v; want the first two segments, %d intact records, none cut off the end", rep.Moved, superseded)
	}
	if rep, err := Check(dir); err != nil || !rep.Sound() || rep.LastLSN != uint64(len(recs)) {
		t.Fatalf("Check after Repair = %+v, %v; want a sound log up to %d", rep, err, len(recs))
	}
	l := mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	equalRecords(t, "after the snapshot", replayAll(t, l, snapLSN), recs[snapLSN:])
}

// TestInvalidSnapshots: Check verifies snapshots; Repair moves invalid ones aside.
func TestInvalidSnapshots(t *testing.T) {
	recs := randomRecords(newRand(t), 20, 100)
	dir := buildLog(t, Options{}, recs)
	writeSnapshot(t, dir, 5, "five")
	p9 := writeSnapshot(t, dir, 9, strings.Repeat("nine", 1000))
	good, err := os.ReadFile(p9)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(good)
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(p9, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(dir)
	if err != nil || rep.Sound() || rep.Snapshots != 1 || rep.SnapshotLSN != 5 || len(rep.BadSnapshots) != 1 ||
		rep.BadSnapshots[0].File != p9 || !strings.Contains(rep.BadSnapshots[0].Reason, "checksum mismatch") || rep.Gap != "" {
		t.Fatalf("Check = %+v, %v; want snapshot 9 invalid, recovery from 5", rep, err)
	}
	rep, err = Repair(dir)
	if err != nil || rep.Moved == nil || !slices.Equal(rep.Moved.Files, []string{filepath.Base(p9)}) {
		t.Fatalf("Repair = %+v, %v; want the invalid snapshot moved aside", rep, err)
	}
	if b, err := os.ReadFile(filepath.Join(rep.Moved.Dir, filepath.Base(p9))); err != nil || !bytes.Equal(b, bad) {
		t.Fatalf("the snapshot moved aside differs (%v)", err)
	}
	if rep, err := Check(dir); err != nil || !rep.Sound() || rep.Snapshots != 1 {
		t.Fatalf("Check after Repair = %+v, %v; want sound", rep, err)
	}

	// The only snapshot is invalid and the log no longer reaches back: the records are missing.
	dir = t.TempDir()
	l := mustOpen(t, dir, Options{})
	appendAll(t, l, recs[:10])
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, recs[10:])
	p := writeSnapshot(t, dir, 10, "ten")
	if err := l.RemoveBefore(10); err != nil {
		t.Fatal(err)
	}
	mustClose(t, l)
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(dir); err != nil || rep.Sound() || !strings.Contains(rep.Gap, "records 1..10") || !strings.Contains(rep.Gap, filepath.Base(p)) {
		t.Fatalf("Check = %+v, %v; want records 1..10 missing, naming the invalid snapshot", rep, err)
	}
}
