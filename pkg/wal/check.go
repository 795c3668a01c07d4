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

// Report describes a log directory, as Check and Repair found it.
type Report struct {
	Segments   int     // segment files in the directory
	Records    uint64  // valid records before the first damage
	FirstLSN   uint64  // LSN of the first record the log holds (the first segment's name)
	LastLSN    uint64  // LSN of the last valid record; FirstLSN-1 when there is none
	TornTail   *Damage // a torn write at the end of the last segment, which Open cuts off silently
	Corruption *Damage // damage before the tail, which stops Open and needs Repair
	Snapshots  int     // valid snapshot files in the directory
}

// Damage locates a bad spot in a segment file and says how much a repair drops.
type Damage struct {
	File   string // path of the segment file
	Offset int64  // where the bad spot starts; everything before it is valid
	Bytes  int64  // bytes a repair drops: the rest of File and any later segment files
	Reason string // what is wrong, in words
}

// CorruptionError is returned by Open when the log is damaged before its tail: records it once
// wrote in full are unreadable, so starting would silently lose them. Check shows the damage and
// Repair truncates the log there.
type CorruptionError struct {
	File   string // the damaged segment file
	Offset int64  // the offset of the first bad byte
	Reason string // what is wrong
}

// Error names the file, the offset and the problem.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s", e.File, e.Offset, e.Reason)
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
	segs    []seqFile
	report  Report
	lastEnd int64 // end of the valid data in the last segment
	cut     int   // index of the segment a repair truncates at the damage offset; -1 for none
	drop    int   // a repair removes segs[drop:]
}

// scanDir scans every segment of dir in order, checking that each continues the previous one, and
// stops at the first damage.
func scanDir(dir string) (*dirScan, error) {
	segs, err := listSeq(dir, ".wal")
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	d := &dirScan{segs: segs, cut: -1, drop: len(segs)}
	d.report.Segments = len(segs)
	if len(segs) == 0 {
		return d, nil
	}
	d.report.FirstLSN = segs[0].seq
	d.report.LastLSN = segs[0].seq - 1
	var buf []byte
	for i, s := range segs {
		if s.seq != d.report.LastLSN+1 {
			d.drop = i
			d.setDamage(&Damage{File: s.path, Reason: fmt.Sprintf("segment starts at LSN %d, but the previous one ends at %d", s.seq, d.report.LastLSN)}, false)
			break
		}
		if buf, err = readFile(s.path, buf); err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		sc, _ := scanSegment(buf, s.seq, i == len(segs)-1, nil)
		d.report.Records += sc.records
		d.report.LastLSN = sc.last
		d.lastEnd = sc.end
		if sc.damage != nil {
			sc.damage.File = s.path
			d.cut, d.drop = i, i+1
			d.setDamage(sc.damage, sc.torn)
			break
		}
	}
	return d, d.countDropped()
}

func (d *dirScan) setDamage(dmg *Damage, torn bool) {
	if torn {
		d.report.TornTail = dmg
	} else {
		d.report.Corruption = dmg
	}
}

func (d *dirScan) damage() *Damage {
	if d.report.Corruption != nil {
		return d.report.Corruption
	}
	return d.report.TornTail
}

// countDropped adds the segments a repair would remove to the damage's Bytes and Reason.
func (d *dirScan) countDropped() error {
	dropped := d.segs[d.drop:]
	if len(dropped) == 0 {
		return nil
	}
	dmg := d.damage()
	var total int64
	for _, s := range dropped {
		fi, err := os.Stat(s.path)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		total += fi.Size()
	}
	dmg.Bytes += total
	dmg.Reason += fmt.Sprintf(" (a repair removes %d segment file(s) from %s on)", len(dropped), filepath.Base(dropped[0].path))
	return nil
}

// repair truncates the log at the damage: it removes the dropped segments, newest first so that an
// interrupted repair leaves a log that is still contiguous, then truncates the damaged segment.
func (d *dirScan) repair(dir string) error {
	dmg := d.damage()
	if dmg == nil {
		return nil
	}
	for i := len(d.segs) - 1; i >= d.drop; i-- {
		if err := os.Remove(d.segs[i].path); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
	}
	d.segs = d.segs[:d.drop]
	if d.cut >= 0 {
		if err := truncateSegment(d.segs[d.cut], dmg.Offset); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		d.lastEnd = max(dmg.Offset, segHeaderSize)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
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

// Check reads the log in dir without changing anything and reports its extent and its first damage,
// as Open would judge it (a torn tail is cut off by Open; corruption stops it).
func Check(dir string) (Report, error) {
	d, err := scanDir(dir)
	if err != nil {
		return Report{}, err
	}
	d.report.Snapshots, err = countValidSnapshots(dir)
	return d.report, err
}

// Repair truncates the log in dir at its first damage, torn tail or corruption, dropping every
// record after it, later segment files included, as redis-check-aof --fix does. It returns the
// report of what it found, whose Damage says what was dropped; with no damage it changes nothing.
// The log must not be open.
func Repair(dir string) (Report, error) {
	d, err := scanDir(dir)
	if err != nil {
		return Report{}, err
	}
	if err := d.repair(dir); err != nil {
		return d.report, err
	}
	d.report.Snapshots, err = countValidSnapshots(dir)
	return d.report, err
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
