package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Moved is what Repair took out of a data directory. Nothing is deleted: every file Repair
// changes or takes away is in Dir as it was, byte for byte, so copying Dir's files back into the
// data directory (with the server stopped) undoes the repair; Dir's REPAIR.txt says so with the
// exact command.
type Moved struct {
	Dir     string   // the folder, inside the data directory: repair-<UTC time>
	Files   []string // the names of the files it holds, as they were named in the data directory
	Actions []string // what Repair did, one sentence each
	// Records counts the intact records cut off the end of the log: recovery no longer has them.
	// Superseded counts the records of segments moved from the start of the log, which the
	// newest valid snapshot holds: nothing of them is lost.
	Records    uint64
	Superseded uint64
}

// repairPlan is what Repair does about a log's first damage: cut the log after the damage (the
// usual case), or, when the newest valid snapshot holds every record up to and past the damage,
// drop the start of the log instead, which loses nothing.
type repairPlan struct {
	move      []seqFile // whole segment files moved aside
	truncate  int       // index of the segment copied aside and then cut at cutAt; -1 for none
	cutAt     int64
	head      bool   // the segments moved are the start of the log, which the snapshot holds
	setMarker bool   // LAST_SEGMENT is rewritten to name marker (moved aside when marker is 0)
	marker    uint64 // the first LSN of the log's last segment after the repair
}

// planRepair decides what Repair does about the damage, given the LSN of the newest valid
// snapshot, and writes it into the damage's Repair, Bytes and Records.
func (d *dirScan) planRepair(snapLSN uint64) error {
	dmg := d.damage()
	if dmg == nil {
		return nil
	}
	p := repairPlan{truncate: -1}
	switch {
	case d.gap >= 0 && d.segs[d.gap].seq <= snapLSN+1:
		p.head, p.move = true, d.segs[:d.gap]
	case d.gap >= 0:
		p.move = d.segs[d.gap:]
		p.setMarker, p.marker = true, d.segs[d.gap-1].seq
	case d.cut >= 0 && d.report.Corruption != nil && d.cut+1 < len(d.segs) && d.segs[d.cut+1].seq <= snapLSN+1:
		p.head, p.move = true, d.segs[:d.cut+1]
	case d.cut >= 0:
		p.truncate, p.cutAt, p.move = d.cut, dmg.Offset, d.segs[d.cut+1:]
		p.setMarker, p.marker = !d.hasMarker || d.marker != d.segs[d.cut].seq, d.segs[d.cut].seq
	default: // the last segment(s) are missing: only the marker changes
		p.setMarker, p.marker = true, d.lastSeq()
	}
	d.plan = p
	dmg.Bytes, dmg.Records = 0, 0
	var buf []byte
	var err error
	if p.truncate >= 0 {
		s := d.segs[p.truncate]
		if buf, err = readFile(s.path, buf); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		dmg.Bytes += int64(len(buf)) - p.cutAt
		dmg.Records += intactRecords(buf, p.cutAt+1, d.report.LastLSN+1)
	}
	for _, s := range p.move {
		if buf, err = readFile(s.path, buf); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		dmg.Bytes += int64(len(buf))
		dmg.Records += intactRecords(buf, 0, s.seq)
	}
	dmg.Repair = p.describe(d, snapLSN, dmg)
	return nil
}

// describe says in words what the plan does about dmg.
func (p *repairPlan) describe(d *dirScan, snapLSN uint64, dmg *Damage) string {
	switch {
	case d.report.Corruption == nil:
		return fmt.Sprintf("start-up cuts the %d byte(s) off; a repair moves a copy of the segment aside first", dmg.Bytes)
	case p.head:
		return fmt.Sprintf("a repair moves %d segment(s) from the start of the log aside (%d intact record(s), all held by the snapshot at LSN %d: nothing is lost)",
			len(p.move), dmg.Records, snapLSN)
	case p.truncate >= 0 || len(p.move) > 0:
		var what []string
		if p.truncate >= 0 {
			what = append(what, fmt.Sprintf("cuts %s at offset %d (keeping a copy)", filepath.Base(d.segs[p.truncate].path), p.cutAt))
		}
		if len(p.move) > 0 {
			what = append(what, fmt.Sprintf("moves %d later segment(s) aside", len(p.move)))
		}
		return fmt.Sprintf("a repair %s: %d intact record(s) after the damage and %d byte(s) leave the log, kept in a folder beside it",
			strings.Join(what, " and "), dmg.Records, dmg.Bytes)
	default:
		return fmt.Sprintf("a repair records in %s that the log now ends at LSN %d; the missing records cannot be brought back by it",
			markerName, d.report.LastLSN)
	}
}

// intactRecords counts the whole records with matching checksums in segment data from offset
// from on, with LSNs of at least minLSN, resynchronising after every bad spot: what a cut there
// takes out of the log that was once written intact.
func intactRecords(data []byte, from int64, minLSN uint64) uint64 {
	var n uint64
	for p := from; p < int64(len(data)); {
		lsn, rec, problem := decodeFrame(data[p:])
		if problem != "" || lsn < minLSN {
			if p = findFrame(data, p+1, minLSN); p < 0 {
				break
			}
			continue
		}
		n++
		minLSN = lsn + 1
		p += frameHeaderSize + int64(len(rec))
	}
	return n
}

// Repair makes the data directory dir recoverable again without deleting anything: it moves
// every invalid snapshot aside, and cuts the log at its first damage, moving whatever it cuts
// (whole later segments, and a copy of the damaged segment before truncating it) into a folder
// repair-<UTC time> inside dir, as redis-check-aof --fix does but keeping what it cuts. When the
// newest valid snapshot holds every record up to and past the damage, it moves the start of the
// log aside instead, which loses nothing. It repeats until the log is sound. It takes the
// directory's lock, so it refuses (a *LockedError) while a server uses the directory. It
// returns the report of what it found, with Moved saying what it did; with no damage it changes
// nothing. Records that neither a valid snapshot nor the log holds (Report.Gap) it cannot bring
// back.
func Repair(dir string) (Report, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return Report{}, err
	}
	defer lock.release()
	d, err := inspect(dir)
	if err != nil {
		return Report{}, err
	}
	found := d.report
	a := &aside{dataDir: dir, when: time.Now().UTC()}
	for _, b := range found.BadSnapshots {
		if err := a.move(b.File, fmt.Sprintf("%s: %s; moved here", filepath.Base(b.File), b.Reason)); err != nil {
			return found, err
		}
	}
	for rounds := len(d.segs) + 1; d.damage() != nil; rounds-- { // a head cut drops a segment, a tail cut ends the log
		if rounds == 0 {
			return found, fmt.Errorf("wal: repair of %s: the log is still damaged: %s", dir, d.damage().Reason)
		}
		if err := d.repair(a); err != nil {
			return found, err
		}
		if d, err = scanDir(dir); err != nil {
			return found, err
		}
		if err := d.planRepair(found.SnapshotLSN); err != nil {
			return found, err
		}
	}
	found.Moved, err = a.finish()
	return found, err
}

// repair carries out the plan into a. The marker changes first, to a segment that stays, so that
// an interrupted repair never leaves it naming a segment that is gone; segments cut off the end
// go newest first, so that the log stays contiguous at every step.
func (d *dirScan) repair(a *aside) error {
	p, dmg := &d.plan, d.damage()
	what := fmt.Sprintf("damage in %s: %s", filepath.Base(dmg.File), dmg.Reason)
	if d.report.Corruption == nil {
		what = fmt.Sprintf("torn write at the end of %s: %s", filepath.Base(dmg.File), dmg.Reason)
	}
	a.note(what)
	if p.setMarker {
		if err := a.setMarker(p.marker); err != nil {
			return err
		}
	}
	if p.head {
		for _, s := range p.move {
			if err := a.move(s.path, fmt.Sprintf("%s: moved here from the start of the log; the snapshot holds its records", filepath.Base(s.path))); err != nil {
				return err
			}
		}
		a.moved.Superseded += dmg.Records
		return nil
	}
	for i := len(p.move) - 1; i >= 0; i-- {
		if err := a.move(p.move[i].path, fmt.Sprintf("%s: cut off the end of the log, moved here", filepath.Base(p.move[i].path))); err != nil {
			return err
		}
	}
	if p.truncate >= 0 {
		s := d.segs[p.truncate]
		if err := a.copy(s.path, fmt.Sprintf("%s: cut at offset %d in the log; its original is here", filepath.Base(s.path), p.cutAt)); err != nil {
			return err
		}
		if err := truncateSegment(s, p.cutAt); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
	}
	a.moved.Records += dmg.Records
	return syncDir(d.dir)
}

// aside is the folder Repair moves what it takes out of the data directory into; it is created
// on first use.
type aside struct {
	dataDir string
	when    time.Time
	moved   Moved
}

// folder returns the folder, creating it the first time.
func (a *aside) folder() (string, error) {
	if a.moved.Dir != "" {
		return a.moved.Dir, nil
	}
	base := filepath.Join(a.dataDir, "repair-"+a.when.Format("20060102T150405Z"))
	path := base
	for i := 2; ; i++ {
		err := os.Mkdir(path, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("wal: repair: %w", err)
		}
		path = fmt.Sprintf("%s-%d", base, i)
	}
	if err := syncDir(a.dataDir); err != nil {
		return "", fmt.Errorf("wal: repair: %w", err)
	}
	a.moved.Dir = path
	return path, nil
}

func (a *aside) note(action string) { a.moved.Actions = append(a.moved.Actions, action) }

// move renames the file at path into the folder.
func (a *aside) move(path, action string) error {
	dir, err := a.folder()
	if err != nil {
		return err
	}
	if err := os.Rename(path, filepath.Join(dir, filepath.Base(path))); err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
	a.keep(path, action)
	return syncDir(dir)
}

// copy copies the file at path into the folder and makes the copy durable, before the original
// is changed.
func (a *aside) copy(path, action string) error {
	dir, err := a.folder()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = writeFileSync(filepath.Join(dir, filepath.Base(path)), b)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
	a.keep(path, action)
	return nil
}

func (a *aside) keep(path, action string) {
	a.moved.Files = append(a.moved.Files, filepath.Base(path))
	a.note(action)
}

// setMarker makes LAST_SEGMENT name the segment starting at first, keeping the old marker in the
// folder; with first 0 (no segment left) the marker is moved aside.
func (a *aside) setMarker(first uint64) error {
	path := filepath.Join(a.dataDir, markerName)
	if first == 0 {
		return a.move(path, fmt.Sprintf("%s: no segment is left, moved here", markerName))
	}
	action := fmt.Sprintf("%s: now names %s; the old one is here", markerName, filepath.Base(segmentPath(a.dataDir, first)))
	if err := a.copy(path, action); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := writeMarker(a.dataDir, first); err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
	return nil
}

// finish writes REPAIR.txt into the folder, saying what was done and how to undo it, and returns
// what was moved; nil when nothing was.
func (a *aside) finish() (*Moved, error) {
	if a.moved.Dir == "" {
		return nil, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "putallctl wal repair of %s at %s\n\n", a.dataDir, a.when.Format(time.RFC3339))
	for _, s := range a.moved.Actions {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	fmt.Fprintf(&b, "\n%d intact record(s) were cut off the end of the log; %d more, which the snapshot holds, were moved from its start.\n",
		a.moved.Records, a.moved.Superseded)
	fmt.Fprintf(&b, "\nThe files here are the originals, byte for byte. To undo this repair, stop the server and run:\n\n  %s\n",
		a.moved.UndoCommand(a.dataDir))
	if err := writeFileSync(filepath.Join(a.moved.Dir, "REPAIR.txt"), []byte(b.String())); err != nil {
		return &a.moved, fmt.Errorf("wal: repair: %w", err)
	}
	return &a.moved, syncDir(a.moved.Dir)
}

// UndoCommand is the shell command that puts the files back into the data directory dataDir,
// undoing the repair (run it with the server stopped).
func (m *Moved) UndoCommand(dataDir string) string {
	args := []string{"cp", "-p"}
	for _, f := range m.Files {
		args = append(args, shellQuote(filepath.Join(m.Dir, f)))
	}
	return strings.Join(append(args, shellQuote(dataDir)+"/"), " ")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeFileSync writes a new file at path holding b, mode 0600, and fsyncs it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
