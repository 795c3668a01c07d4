package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/syncbuf"
)

// logWithFile returns a directory holding one segment file with the given contents.
func logWithFile(t *testing.T, name string, data []byte) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// recoverAndExtend opens dir, checks it recovers exactly want (logging a torn tail when torn), then
// appends one record, reopens and checks that record follows with the next LSN.
func recoverAndExtend(t *testing.T, dir string, want [][]byte, torn bool) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	l, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := l.LastLSN(); got != uint64(len(want)) {
		t.Fatalf("LastLSN = %d; want %d", got, len(want))
	}
	equalRecords(t, "recovered", replayAll(t, l, 0), want)
	if logged := strings.Contains(logs.String(), "torn tail"); logged != torn {
		t.Fatalf("torn tail logged: %v; want %v. Log:\n%s", logged, torn, logs)
	}
	extra := []byte("appended after recovery")
	appendAll(t, l, [][]byte{extra})
	mustClose(t, l)
	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	equalRecords(t, "after recovery and an append", replayAll(t, l, 0), append(slices.Clone(want), extra))
}

func TestTornLastRecordAtEveryOffset(t *testing.T) {
	recs := randomRecords(newRand(t), 5, 200)
	recs[4] = []byte(strings.Repeat("last record ", 8))
	seg := segmentFiles(t, buildLog(t, Options{}, recs))[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	start := int64(len(data)) - frameSize(recs[4])
	for cut := start; cut < int64(len(data)); cut++ {
		dir, _ := logWithFile(t, filepath.Base(seg), data[:cut])
		t.Run("", func(t *testing.T) {
			t.Logf("last record cut at offset %d (it spans %d..%d)", cut, start, len(data))
			recoverAndExtend(t, dir, recs[:4], cut > start)
		})
	}
}

func TestTornTails(t *testing.T) {
	recs := randomRecords(newRand(t), 10, 300)
	src := buildLog(t, Options{SegmentBytes: 256}, recs)
	segs := segmentFiles(t, src)
	if len(segs) < 3 {
		t.Fatalf("%d segments; want at least 3", len(segs))
	}
	last := segs[len(segs)-1]
	lastData, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	lastFirst, _ := parseSeq(filepath.Base(last), ".wal")
	before := int(lastFirst - 1) // records in the segments before the last
	zeros := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		data []byte // the new contents of the last segment
		want int    // records recovered
		// creating: the crash came while the last segment was being created, before
		// LAST_SEGMENT named it (it still names the one before).
		creating bool
	}{
		{"zeros after the last record", append(slices.Clone(lastData), zeros...), len(recs), false},
		{"last record cut short", lastData[:len(lastData)-5], len(recs) - 1, false},
		{"garbage record with nothing valid after", append(slices.Clone(lastData), bytes.Repeat([]byte{0xA5}, 40)...), len(recs), false},
		{"less than a record header after the last record", append(slices.Clone(lastData), 1, 2, 3), len(recs), false},
		{"segment header cut short", lastData[:7], before, true},
		{"empty segment file", nil, before, true},
		{"zeroed segment", zeros, before, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, filepath.Base(last))
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.creating {
				prev, _ := parseSeq(filepath.Base(segs[len(segs)-2]), ".wal")
				if err := writeMarker(dir, prev); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Check(dir)
			if err != nil || rep.TornTail == nil || rep.Corruption != nil || rep.Records != uint64(tc.want) || !rep.Sound() {
				t.Fatalf("Check = %+v, %v; want a torn tail after %d records", rep, err, tc.want)
			}
			recoverAndExtend(t, dir, recs[:tc.want], true)
		})
	}
}

func TestCorruptionBeforeTail(t *testing.T) {
	recs := randomRecords(newRand(t), 6, 300)
	for i := range recs {
		recs[i] = append(recs[i], 'x') // no empty payload: the payload case flips a payload byte
	}
	src := buildLog(t, Options{}, recs)
	seg := filepath.Base(segmentFiles(t, src)[0])
	recOff := func(i int) int64 { // offset of record i (0-based)
		off := int64(segHeaderSize)
		for _, r := range recs[:i] {
			off += frameSize(r)
		}
		return off
	}
	for _, tc := range []struct {
		name string
		rec  int   // the damaged record
		at   int64 // byte offset within its frame
		bit  byte
	}{
		{"payload bit", 2, frameHeaderSize, 0x10},
		{"length low bit", 2, 0, 0x01},
		{"length high bit, runs past EOF", 2, 3, 0x40},
		{"checksum bit", 2, 5, 0x80},
		{"LSN bit", 2, 8, 0x02},
		{"first record", 0, frameHeaderSize, 0x01},
		{"segment magic", -1, 1, 0x01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, seg)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off, good := int64(0), 0
			if tc.rec >= 0 {
				off, good = recOff(tc.rec), tc.rec
			}
			data[off+tc.at] ^= tc.bit
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}

			_, err = Open(dir, Options{Logger: quiet})
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.File != path || ce.Offset != off {
				t.Fatalf("Open: %v; want a *CorruptionError at %s offset %d", err, path, off)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatal("Open changed a corrupt log")
			}

			rep, err := Check(dir)
			if err != nil || rep.Corruption == nil || rep.Corruption.File != path || rep.Corruption.Offset != off ||
				rep.TornTail != nil || rep.Records != uint64(good) {
				t.Fatalf("Check = %+v, %v; want corruption at offset %d after %d records", rep, err, off, good)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatal("Check changed the log")
			}
			if rep.Corruption.Bytes != int64(len(data))-off {
				t.Fatalf("Check says a repair drops %d bytes; want %d", rep.Corruption.Bytes, int64(len(data))-off)
			}

			if rep, err := Repair(dir); err != nil || rep.Corruption == nil || rep.Corruption.Offset != off {
				t.Fatalf("Repair = %+v, %v", rep, err)
			}
			if rep, err := Check(dir); err != nil || rep.Corruption != nil || rep.TornTail != nil || rep.Records != uint64(good) {
				t.Fatalf("Check after Repair = %+v, %v; want a clean log of %d records", rep, err, good)
			}
			recoverAndExtend(t, dir, recs[:good], false)
		})
	}
}

func TestCorruptionAcrossSegments(t *testing.T) {
	recs := randomRecords(newRand(t), 40, 300)
	src := buildLog(t, Options{SegmentBytes: 1 << 10}, recs)
	segs := segmentFiles(t, src)
	if len(segs) < 5 {
		t.Fatalf("%d segments; want at least 5", len(segs))
	}
	mid := filepath.Base(segs[2])
	first := func(name string) uint64 { n, _ := parseSeq(name, ".wal"); return n }
	for _, tc := range []struct {
		name   string
		damage func(path string) error
		keep   uint64 // records left after Repair
		reason string
	}{
		{
			name: "truncated non-last segment",
			damage: func(path string) error {
				fi, err := os.Stat(path)
				if err != nil {
					return err
				}
				return os.Truncate(path, fi.Size()-1)
			},
			keep: first(mid) - 1 + countRecords(t, segs[2]) - 1,
		},
		{
			name:   "missing segment",
			damage: os.Remove,
			keep:   first(mid) - 1,
			reason: "previous one ends",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			if err := tc.damage(filepath.Join(dir, mid)); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, Options{Logger: quiet})
			var ce *CorruptionError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("Open: %v; want a *CorruptionError saying %q", err, tc.reason)
			}
			rep, err := Check(dir)
			if err != nil || rep.Corruption == nil || rep.Records != tc.keep || !strings.Contains(rep.Corruption.Repair, "later segment(s) aside") {
				t.Fatalf("Check = %+v (%+v), %v; want corruption after %d records, saying later segments go", rep, rep.Corruption, err, tc.keep)
			}
			if _, err := Repair(dir); err != nil {
				t.Fatal(err)
			}
			recoverAndExtend(t, dir, recs[:tc.keep], false)
		})
	}
}

// countRecords returns the number of valid records in the segment file at path.
func countRecords(t *testing.T, path string) uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := parseSeq(filepath.Base(path), ".wal")
	s, _ := scanSegment(data, n, false, nil)
	return s.records
}

func TestCheckEmptyAndMissingDir(t *testing.T) {
	rep, err := Check(t.TempDir())
	if err != nil || rep.Segments != 0 || !rep.Sound() || rep.TornTail != nil || rep.Snapshots != 0 || rep.Held {
		t.Fatalf("Check(empty dir) = %+v, %v", rep, err)
	}
	if _, err := Check(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("Check of a missing directory succeeded")
	}
}

// encodeSegment returns a segment file starting at LSN 1 holding recs.
func encodeSegment(recs ...[]byte) []byte {
	b := segmentHeader(1)
	for i, r := range recs {
		b = appendFrame(b, uint64(i+1), crc32.Checksum(r, castagnoli), r)
	}
	return b
}

// FuzzDecode feeds arbitrary segment contents to the scanner: it must not panic, and what it
// accepts must be exactly the encoding of the records it returned, followed by the damage it reports.
func FuzzDecode(f *testing.F) {
	valid := encodeSegment([]byte("one"), nil, bytes.Repeat([]byte("three"), 50))
	f.Add(valid)
	f.Add(valid[:len(valid)-7])
	f.Add(append(slices.Clone(valid), make([]byte, 64)...))
	flipped := slices.Clone(valid)
	flipped[segHeaderSize+frameHeaderSize+1] ^= 0x20
	f.Add(flipped)
	f.Add(valid[:segHeaderSize])
	f.Add(valid[:9])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs [][]byte
		s, err := scanSegment(data, 1, true, func(lsn uint64, rec []byte) error {
			if lsn != uint64(len(recs))+1 {
				t.Fatalf("record LSN %d; want %d", lsn, len(recs)+1)
			}
			recs = append(recs, rec)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.records != uint64(len(recs)) || s.last != s.records {
			t.Fatalf("records %d, last %d; the callback saw %d", s.records, s.last, len(recs))
		}
		switch {
		case s.damage == nil && s.end != int64(len(data)):
			t.Fatalf("no damage, but the valid prefix ends at %d of %d", s.end, len(data))
		case s.damage != nil && (s.damage.Offset != s.end || s.damage.Bytes != int64(len(data))-s.end || s.damage.Reason == ""):
			t.Fatalf("damage %+v does not start at the end of the valid prefix %d", *s.damage, s.end)
		}
		if s.end > 0 && !bytes.Equal(encodeSegment(recs...), data[:s.end]) {
			t.Fatal("the valid prefix is not the encoding of the records returned")
		}
		// The same bytes in a segment that is not the last: the same prefix, and no torn tail.
		ns, _ := scanSegment(data, 1, false, nil)
		if ns.end != s.end || ns.records != s.records || ns.torn {
			t.Fatalf("as a non-last segment: end %d records %d torn %v; as the last: end %d records %d", ns.end, ns.records, ns.torn, s.end, s.records)
		}
	})
}

func TestScanSegmentRules(t *testing.T) {
	a, b := []byte("alpha"), []byte("beta")
	valid := encodeSegment(a, b)
	wrongLSN := appendFrame(appendFrame(segmentHeader(1), 1, crc32.Checksum(a, castagnoli), a), 3, crc32.Checksum(b, castagnoli), b)
	badVersion := slices.Clone(valid)
	badVersion[4] = 9
	for _, tc := range []struct {
		name    string
		data    []byte
		first   uint64
		tail    bool
		records uint64
		torn    bool
		reason  string // "" for no damage
	}{
		{"valid", valid, 1, true, 2, false, ""},
		{"cut short, last segment", valid[:len(valid)-1], 1, true, 1, true, "runs past the end"},
		{"cut short, earlier segment", valid[:len(valid)-1], 1, false, 1, false, "runs past the end"},
		{"header cut short, earlier segment", valid[:5], 1, false, 0, false, "incomplete segment header"},
		{"unexpected LSN at the tail", wrongLSN, 1, true, 1, false, "LSN 3, expected 2"},
		{"unsupported version", badVersion, 1, true, 0, false, "version 9"},
		{"renamed segment", valid, 7, true, 0, false, "file name says 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := scanSegment(tc.data, tc.first, tc.tail, nil)
			if err != nil {
				t.Fatal(err)
			}
			if s.records != tc.records || s.torn != tc.torn || (s.damage == nil) != (tc.reason == "") ||
				s.damage != nil && !strings.Contains(s.damage.Reason, tc.reason) {
				t.Fatalf("scan = %+v (damage %+v); want %d records, torn %v, reason %q", s, s.damage, tc.records, tc.torn, tc.reason)
			}
		})
	}
}

// TestTailDamageIsCorruption: damage to the last record of the log, one that was written in
// full (so possibly acknowledged), is corruption, not a torn write: Open refuses the log, Check
// fails it, Repair moves the record aside.
func TestTailDamageIsCorruption(t *testing.T) {
	recs := randomRecords(newRand(t), 6, 300)
	for i := range recs {
		recs[i] = append(recs[i], 'x') // no empty payload: the payload case flips a payload byte
	}
	src := buildLog(t, Options{}, recs)
	seg := filepath.Base(segmentFiles(t, src)[0])
	lastOff := int64(segHeaderSize)
	for _, r := range recs[:5] {
		lastOff += frameSize(r)
	}
	zeroEnd := func(b []byte) []byte { clear(b[len(b)-5:]); return b }
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte // gets the segment, returns it damaged
		reason string
	}{
		{"payload bit", func(b []byte) []byte { b[lastOff+frameHeaderSize] ^= 0x10; return b }, "whole record"},
		{"checksum bit", func(b []byte) []byte { b[lastOff+5] ^= 0x80; return b }, "whole record"},
		{"LSN bit", func(b []byte) []byte { b[lastOff+8] ^= 0x02; return b }, "whole record"},
		{"length bit, past the end of the file", func(b []byte) []byte { b[lastOff+3] ^= 0x40; return b }, "only its length field"},
		{"length raised by one", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[lastOff:], binary.LittleEndian.Uint32(b[lastOff:])+1)
			return b
		}, "only its length field"},
		{"last bytes zeroed", zeroEnd, "whole record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, seg)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data = tc.damage(data)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir, Options{Logger: quiet})
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.File != path || ce.Offset != lastOff || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("Open: %v; want a *CorruptionError at offset %d saying %q", err, lastOff, tc.reason)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatal("Open changed a corrupt log")
			}
			rep, err := Check(dir)
			if err != nil || rep.Corruption == nil || rep.TornTail != nil || rep.Sound() || rep.Records != 5 {
				t.Fatalf("Check = %+v, %v; want corruption after 5 records", rep, err)
			}
			rep, err = Repair(dir)
			if err != nil || rep.Moved == nil || !slices.Equal(rep.Moved.Files, []string{seg}) {
				t.Fatalf("Repair = %+v (moved %+v), %v; want the segment's original kept aside", rep, rep.Moved, err)
			}
			recoverAndExtend(t, dir, recs[:5], false)
		})
	}
}

// TestDamagedHeaderOfANamedSegment: LAST_SEGMENT is written once a new segment's header is
// durable, so a damaged header of a segment it names is corruption, not a crash during creation.
func TestDamagedHeaderOfANamedSegment(t *testing.T) {
	recs := randomRecords(newRand(t), 10, 300)
	src := buildLog(t, Options{SegmentBytes: 256}, recs)
	segs := segmentFiles(t, src)
	last := filepath.Base(segs[len(segs)-1])
	for _, data := range [][]byte{nil, make([]byte, 40), []byte("PKVW\x01")} {
		dir := copyDir(t, src)
		if err := os.WriteFile(filepath.Join(dir, last), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var ce *CorruptionError
		if _, err := Open(dir, Options{Logger: quiet}); !errors.As(err, &ce) || !strings.Contains(ce.Reason, markerName) {
			t.Fatalf("Open with the header of %s as %q: %v; want a *CorruptionError naming %s", last, data, err, markerName)
		}
	}
}

func TestMissingLastSegments(t *testing.T) {
	recs := randomRecords(newRand(t), 40, 300)
	src := buildLog(t, Options{SegmentBytes: 1 << 10}, recs)
	segs := segmentFiles(t, src)
	if len(segs) < 4 {
		t.Fatalf("%d segments; want at least 4", len(segs))
	}
	first := func(path string) uint64 { n, _ := parseSeq(filepath.Base(path), ".wal"); return n }
	for _, tc := range []struct {
		name    string
		removed int // segments removed from the end
	}{
		{"the last", 1},
		{"the last two", 2},
		{"all", len(segs)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			kept := segs[:len(segs)-tc.removed]
			for _, s := range segs[len(kept):] {
				if err := os.Remove(filepath.Join(dir, filepath.Base(s))); err != nil {
					t.Fatal(err)
				}
			}
			var keep uint64
			if len(kept) > 0 {
				keep = first(segs[len(kept)]) - 1
			}
			missing := filepath.Join(dir, filepath.Base(segs[len(segs)-1]))
			_, err := Open(dir, Options{Logger: quiet})
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.File != missing || !strings.Contains(ce.Reason, "missing") {
				t.Fatalf("Open: %v; want a *CorruptionError saying %s is missing", err, missing)
			}
			rep, err := Check(dir)
			if err != nil || rep.Corruption == nil || rep.Records != keep || rep.Sound() {
				t.Fatalf("Check = %+v, %v; want a missing segment after %d records", rep, err, keep)
			}
			if rep, err = Repair(dir); err != nil || rep.Moved == nil || rep.Moved.Files[0] != markerName {
				t.Fatalf("Repair = %+v, %v; want the marker kept aside", rep, err)
			}
			if rep, err := Check(dir); err != nil || !rep.Sound() || rep.Records != keep {
				t.Fatalf("Check after Repair = %+v, %v; want a sound log of %d records", rep, err, keep)
			}
			recoverAndExtend(t, dir, recs[:keep], false)
		})
	}
}

// TestRecordsNeitherSnapshotNorLogHolds: the log must reach back to the newest valid snapshot,
// and on to its cut.
func TestRecordsNeitherSnapshotNorLogHolds(t *testing.T) {
	recs := randomRecords(newRand(t), 40, 300)
	src := buildLog(t, Options{SegmentBytes: 1 << 10}, recs)
	segs := segmentFiles(t, src)
	second, _ := parseSeq(filepath.Base(segs[1]), ".wal")
	for _, tc := range []struct {
		name    string
		snapLSN uint64 // 0: none
		gap     string // "" when recovery has every record
	}{
		{"first segment gone, no snapshot", 0, fmt.Sprintf("records 1..%d", second-1)},
		{"first segment gone, a snapshot holds it", second - 1, ""},
		{"first segment gone, the snapshot holds less", second - 2, fmt.Sprintf("records %d..%d", second-1, second-1)},
		{"snapshot newer than the log", 41, "the log ends at LSN 40"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			if err := os.Remove(filepath.Join(dir, filepath.Base(segs[0]))); err != nil {
				t.Fatal(err)
			}
			if tc.snapLSN > 0 {
				writeSnapshot(t, dir, tc.snapLSN, "state")
			}
			rep, err := Check(dir)
			if err != nil || !strings.Contains(rep.Gap, tc.gap) || (rep.Gap == "") != (tc.gap == "") || rep.Sound() != (tc.gap == "") {
				t.Fatalf("Check = %+v, %v; want gap %q", rep, err, tc.gap)
			}
			l := mustOpen(t, dir, Options{})
			defer mustClose(t, l)
			var ce *CorruptionError
			if err := l.Replay(tc.snapLSN, func(uint64, []byte) error { return nil }); (err == nil) != (tc.gap == "") || err != nil && !errors.As(err, &ce) {
				t.Fatalf("Replay(%d): %v; want a *CorruptionError exactly when records are missing", tc.snapLSN, err)
			}
		})
	}
}

// TestCutShortBeforeTheNamedSegment: a segment older than the one LAST_SEGMENT names was fsynced
// before that one was created, so when the named one is gone and the one before it ends cut
// short, that is corruption, not a torn write.
func TestCutShortBeforeTheNamedSegment(t *testing.T) {
	recs := randomRecords(newRand(t), 20, 300)
	dir := buildLog(t, Options{SegmentBytes: 1 << 10}, recs)
	segs := segmentFiles(t, dir)
	if err := os.Remove(segs[len(segs)-1]); err != nil {
		t.Fatal(err)
	}
	prev := segs[len(segs)-2]
	fi, err := os.Stat(prev)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(prev, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(dir); err != nil || rep.TornTail != nil || rep.Corruption == nil || rep.Corruption.File != prev {
		t.Fatalf("Check = %+v (corruption %+v), %v; want corruption in %s", rep, rep.Corruption, err, prev)
	}
}
