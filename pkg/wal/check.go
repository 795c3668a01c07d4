package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Report describes a data directory, as Check and Repair found it.
type Report struct {
	Segments int    // segment files in the directory
	Records  uint64 // valid records before the first damage
	FirstLSN uint64 // LSN of the first record the log holds (the first segment's name)
	LastLSN  uint64 // LSN of the last valid record; FirstLSN-1 when there is none
	// TornTail is a write a crash cut short at the end of the last segment: it was never
	// acknowledged, and Open cuts it off.
	TornTail *Damage
	// Corruption is the first damage to data the log once wrote in full, or a missing segment:
	// Open refuses the log, Repair moves the damaged part aside.
	Corruption *Damage
	// Snapshots counts the snapshot files that verify; SnapshotLSN is the newest of them, which
	// recovery loads before it replays the log after it (0 for none).
	Snapshots   int
	SnapshotLSN uint64
	// BadSnapshots are the snapshot files that fail verification: recovery skips them for an
	// older one, Repair moves them aside.
	BadSnapshots []Damage
	// Gap, when not empty, says which records neither the newest valid snapshot nor the log
	// holds: recovery stops, and Repair cannot bring them back.
	Gap string
	// NoMarker: the directory has segments but no LAST_SEGMENT marker (a directory made before
	// the marker existed), so a missing last segment cannot be noticed. Open writes one.
	NoMarker bool
	// Held: a process holds the directory's lock (a server is using it; Holder is its pid, 0
	// when unknown), so what Check read may already have changed. Repair refuses then.
	Held   bool
	Holder int
	// Moved is what Repair moved aside; nil from Check, and when Repair found nothing to move.
	Moved *Moved
}

// Sound reports whether recovery restores every record the directory holds without an operator:
// no corruption, no invalid snapshot, no gap. A torn tail is sound: it was never acknowledged.
func (r *Report) Sound() bool {
	return r.Corruption == nil && len(r.BadSnapshots) == 0 && r.Gap == ""
}

// Damage locates a bad spot in a file of the data directory and says what a repair does about it.
type Damage struct {
	File   string // path of the damaged (or missing) file
	Offset int64  // where the bad spot starts; everything before it is valid
	Reason string // what is wrong, in words
	// Repair says what Repair does about it; Bytes and Records are the bytes and the intact
	// records it takes out of the log (none for a snapshot).
	Repair  string
	Bytes   int64
	Records uint64
}

// CorruptionError is returned by Open when data the log once wrote in full is damaged or a
// segment is missing, and by Replay when the log does not reach back to, or up to, the position
// asked for: starting would silently lose records. Check shows the damage and Repair moves it
// aside.
type CorruptionError struct {
	File   string // the damaged or missing file (the directory for a missing range of records)
	Offset int64  // the offset of the first bad byte; 0 when the whole file is concerned
	Reason string // what is wrong
}

// Error names the file, the offset (when inside the file) and the problem.
func (e *CorruptionError) Error() string {
	if e.Offset > 0 {
		return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s", e.File, e.Offset, e.Reason)
	}
	return fmt.Sprintf("wal: corrupt log: %s: %s", e.File, e.Reason)
}

// seqFile is a file named by a number: a segment (seq is the LSN of its first record) or a
// snapshot (seq is its LSN).
type seqFile struct {
	path string
	seq  uint64
}

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.wal", first))
}

// parseSeq returns the number in a file name made of 20 digits and suffix.
func parseSeq(name, suffix string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, suffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// listSeq returns the files of dir named by 20 digits and suffix, in ascending order.
func listSeq(dir, suffix string) ([]seqFile, error) {
	entries, err := os.ReadDir(dir) // sorted by name, so by number
	if err != nil {
		return nil, err
	}
	var refs []seqFile
	for _, e := range entries {
		if n, ok := parseSeq(e.Name(), suffix); ok && e.Type().IsRegular() {
			refs = append(refs, seqFile{path: filepath.Join(dir, e.Name()), seq: n})
		}
	}
	return refs, nil
}

// dirScan is the result of scanning all segments of a directory: what Open, Check and Repair act on.
type dirScan struct {
	dir       string
	segs      []seqFile
	report    Report
	lastEnd   int64  // end of the valid data in the last segment
	marker    uint64 // the first LSN of the segment LAST_SEGMENT names, when hasMarker
	hasMarker bool
	cut       int        // index of the damaged segment; -1 for a gap or a missing last segment
	gap       int        // index of the segment that follows a gap in the sequence; -1 for none
	plan      repairPlan // what Repair does about the damage (see planRepair)
	buf       []byte     // the buffer the segments were read into (as large as the largest)
}

// scanDir scans every segment of dir in order, checking that each continues the previous one and
// that none is missing at the end, and stops at the first damage.
func scanDir(dir string) (*dirScan, error) {
	d := &dirScan{dir: dir, cut: -1, gap: -1}
	var err error
	// The marker first: a segment it names exists before the marker names it, so a listing made
	// after reading it sees that segment even while a server (which Check allows) starts one.
	if d.marker, d.hasMarker, err = readMarker(dir); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	segs, err := listSeq(dir, ".wal")
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	d.segs = segs
	r := &d.report
	r.Segments = len(segs)
	r.NoMarker = !d.hasMarker && len(segs) > 0
	if len(segs) > 0 {
		r.FirstLSN, r.LastLSN = segs[0].seq, segs[0].seq-1
	}
	var buf []byte
	for i, s := range segs {
		if s.seq != r.LastLSN+1 {
			d.gap = i
			r.Corruption = &Damage{File: s.path, Reason: fmt.Sprintf(
				"segment starts at LSN %d, but the previous one ends at %d: the segment(s) holding LSN %d..%d are missing",
				s.seq, r.LastLSN, r.LastLSN+1, s.seq-1)}
			return d, nil
		}
		if buf, err = readFile(s.path, buf); err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		d.buf = buf
		// Only the newest segment created can end in a torn write: one before the segment the
		// marker names was fsynced before that one was created.
		tail := i == len(segs)-1 && (!d.hasMarker || s.seq >= d.marker)
		sc, _ := scanSegment(buf, s.seq, tail, nil)
		r.Records += sc.records
		r.LastLSN = sc.last
		d.lastEnd = sc.end
		if dmg := sc.damage; dmg != nil {
			dmg.File, d.cut = s.path, i
			if sc.torn && sc.end == 0 && d.hasMarker && s.seq <= d.marker {
				sc.torn = false // the marker is written only once the segment's header is durable
				dmg.Reason += fmt.Sprintf("; %s names this segment, so its header was written in full", markerName)
			}
			if sc.torn {
				r.TornTail = dmg
			} else {
				r.Corruption = dmg
			}
			return d, nil
		}
	}
	if d.hasMarker && d.marker > d.lastSeq() {
		r.Corruption = &Damage{File: segmentPath(dir, d.marker), Reason: fmt.Sprintf(
			"missing: %s names it as the newest segment, so the records after LSN %d are lost", markerName, r.LastLSN)}
	}
	return d, nil
}

// lastSeq is the first LSN of the last segment; 0 when there is none.
func (d *dirScan) lastSeq() uint64 {
	if len(d.segs) == 0 {
		return 0
	}
	return d.segs[len(d.segs)-1].seq
}

func (d *dirScan) damage() *Damage {
	if d.report.Corruption != nil {
		return d.report.Corruption
	}
	return d.report.TornTail
}

// cutTornTail truncates the last segment at its torn tail, as Open does.
func (d *dirScan) cutTornTail() error {
	t := d.report.TornTail
	if err := truncateSegment(d.segs[d.cut], t.Offset); err != nil {
		return fmt.Errorf("wal: cut torn tail: %w", err)
	}
	d.lastEnd = max(t.Offset, segHeaderSize)
	return nil
}

// truncateSegment cuts s at off and fsyncs it; a cut inside the header writes a fresh header, so
// the segment stays a valid, empty one that keeps its place in the LSN sequence.
func truncateSegment(s seqFile, off int64) error {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if off < segHeaderSize {
		if err = f.Truncate(0); err == nil {
			_, err = f.WriteAt(segmentHeader(s.seq), 0)
		}
	} else {
		err = f.Truncate(off)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Check reads the data directory dir without changing anything and reports the extent of its
// log, its first damage as Open would judge it (a torn tail is cut off by Open; corruption stops
// it) with what a repair would do about it, every snapshot that fails verification, and any
// records that neither the newest valid snapshot nor the log holds. It does not take the
// directory's lock; it reports whether a process holds it.
func Check(dir string) (Report, error) {
	d, err := inspect(dir)
	if err != nil {
		return Report{}, err
	}
	r := d.report
	r.Holder, r.Held, err = lockHolder(dir)
	return r, err
}

// inspect scans the snapshots and the log of dir and plans the repair of the log's first damage.
func inspect(dir string) (*dirScan, error) {
	snaps, err := scanSnapshots(dir)
	if err != nil {
		return nil, err
	}
	d, err := scanDir(dir)
	if err != nil {
		return nil, err
	}
	r := &d.report
	r.Snapshots, r.SnapshotLSN, r.BadSnapshots = len(snaps.valid), snaps.newest(), snaps.bad
	if err := d.planRepair(r.SnapshotLSN); err != nil {
		return nil, err
	}
	r.Gap = d.gapAfter(r.SnapshotLSN, snaps)
	return d, nil
}

// gapAfter says which records recovery from the snapshot at LSN base (0: from nothing) finds in
// neither that snapshot nor the log; "" when there are none. A log that is damaged before it
// reaches base is left to the damage's report.
func (d *dirScan) gapAfter(base uint64, snaps snapshotScan) string {
	r := &d.report
	var gap string
	switch {
	case r.Segments > 0 && r.FirstLSN > base+1:
		gap = fmt.Sprintf("records %d..%d are in no valid snapshot and no segment", base+1, r.FirstLSN-1)
	case r.Corruption == nil && r.LastLSN < base:
		gap = fmt.Sprintf("the log ends at LSN %d, before the newest valid snapshot (LSN %d): the segments after it are missing", r.LastLSN, base)
	default:
		return ""
	}
	if newer := snaps.newestBadAfter(base); newer != "" {
		gap += fmt.Sprintf(" (%s would cover more, but it is invalid)", filepath.Base(newer))
	}
	return gap
}

// readFile reads the file at path into buf, growing it as needed, and returns the contents.
func readFile(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	if int64(cap(buf)) < fi.Size() {
		buf = make([]byte, fi.Size())
	}
	buf = buf[:fi.Size()]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf, fmt.Errorf("read %s: %w", path, err)
	}
	return buf, nil
}

// syncDir fsyncs the directory dir, making file creations, renames and removals in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
