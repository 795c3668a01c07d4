package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// maxHeld bounds the bytes the writer holds written but not fsynced: past it the writer fsyncs
// whatever the policy says. It is also the largest buffer the writer keeps for reuse.
const maxHeld = 8 << 20

// writer is the state of the writer goroutine. It holds every record it took until that record is
// fsynced, so that after an I/O failure it can write them again: a failed write(2) may leave part
// of a batch in the file, and after a failed fsync the kernel may have dropped the dirty pages.
type writer struct {
	f         file
	path      string
	first     uint64 // LSN of the current segment's first record
	syncedOff int64  // the current segment is fsynced up to this offset
	held      []byte // the bytes at [syncedOff, syncedOff+len(held)): records taken, not yet fsynced
	heldN     int    // records in held
	wrote     int    // bytes of held written to the file (a prefix) since the last failed fsync
	wroteN    int    // records in that prefix
	inFile    int    // bytes of held in the file (a prefix), even if a failed fsync asks to rewrite them
	last      uint64 // LSN of the last record taken
	written   uint64 // every LSN up to this one is written to the OS
	synced    uint64 // every LSN up to this one is fsynced
	syncOwed  bool   // an fsync was asked for (interval tick, Close) and is not done yet
}

// resume makes the writer append to the existing segment s, whose valid data ends at end. It
// fsyncs s first, so that what Open recovered is durable whatever the previous process did.
func (w *writer) resume(open func(string, int, os.FileMode) (file, error), s seqFile, end int64) error {
	f, err := open(s.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return &ioError{op: "fsync", path: s.path, err: err}
	}
	w.f, w.path, w.first, w.syncedOff = f, s.path, s.seq, end
	return nil
}

// run is the writer goroutine. It wakes when records are queued, when an fsync is due under
// SyncInterval, when a retry is due after a failure, for Rotate and for Close.
func (l *Log) run() {
	defer close(l.done)
	w := &l.w
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	arm := func(d time.Duration) { timer.Reset(d); armed = true }
	var backoff time.Duration // > 0 while failing: the delay before the next attempt
	for {
		kick, tick := l.kick, (<-chan time.Time)(nil)
		if backoff > 0 {
			kick = nil // Append refuses records while failing; retry on the timer only
		}
		if armed {
			tick = timer.C
		}
		var rotateReply chan rotation
		select {
		case <-kick:
		case <-tick:
			armed = false
			if backoff == 0 {
				w.syncOwed = true // the SyncInterval period is over
			}
		case rotateReply = <-l.rotate:
			if backoff > 0 {
				rotateReply <- rotation{err: l.Err()}
				continue
			}
		case <-l.closing:
			l.finish(w)
			return
		}
		err := l.step(w, rotateReply != nil)
		l.publish(w, err)
		if rotateReply != nil {
			r := rotation{last: w.first - 1}
			if err != nil {
				r = rotation{err: failure(err)}
			}
			rotateReply <- r
		}
		if err != nil {
			backoff = min(max(2*backoff, l.opts.minBackoff), l.opts.maxBackoff)
			arm(backoff)
			continue
		}
		backoff = 0
		if l.opts.Sync == SyncInterval && len(w.held) > 0 && !armed {
			arm(l.opts.SyncInterval)
		}
	}
}

// step does one round of the writer's work: take the queued records and write them with one write
// call per segment, rolling to a new segment whenever the current one is full, then fsync if the
// policy or a pending request says so (rotate: close the segment and start a new one instead).
func (l *Log) step(w *writer, rotate bool) error {
	for more := true; more; {
		if w.size() >= l.opts.SegmentBytes {
			if err := l.roll(w); err != nil {
				return err
			}
		}
		more = l.take(w)
		if err := l.write(w); err != nil {
			return err
		}
	}
	if rotate {
		return l.roll(w)
	}
	if l.opts.Sync == SyncAlways {
		if w.syncOwed || len(w.held) >= maxHeld || l.demanded(w.last) {
			return l.sync(w)
		}
		return nil
	}
	if w.syncOwed || len(w.held) >= maxHeld {
		l.advance(w) // written is durable enough: do not make waiters wait for the fsync
		return l.sync(w)
	}
	return nil
}

// demanded reports, under the log's lock, whether a Wait asks for a record up to last.
func (l *Log) demanded(last uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.demandedLocked(last)
}

// size is the size of the current segment with every held record written.
func (w *writer) size() int64 { return w.syncedOff + int64(len(w.held)) }

// finish is the writer's last round, on Close: write and fsync everything, close the segment.
func (l *Log) finish(w *writer) {
	l.mu.Lock()
	l.wantAllLocked()
	l.mu.Unlock()
	w.syncOwed = true
	err := l.step(w, false)
	l.publish(w, err)
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = &ioError{op: "close", path: w.path, err: cerr}
	}
	if err != nil {
		l.closeErr = failure(err)
	}
	l.mu.Lock()
	l.stopped = true
	for _, g := range l.groups { // wake every Wait: what is not durable now never will be
		closeIfSet(g.done)
	}
	closeIfSet(l.queued)
	l.groups, l.queued = nil, nil
	l.mu.Unlock()
}

// take moves queued records to the writer: all of them but those a Hold keeps back, or, when
// they do not all fit in the current segment, the records up to and including the one that
// reaches its size limit. It reports whether records it should take remain queued, for the next
// segment.
func (l *Log) take(w *writer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, upTo := l.next-uint64(l.pendingN), l.takeUpToLocked() // first: the first queued record
	if l.pendingN == 0 || upTo < first {
		return false
	}
	n, count := len(l.pending), l.pendingN
	if want := int(min(upTo-first+1, uint64(l.pendingN))); want < count {
		n, count = 0, 0
		for count < want {
			n += frameHeaderSize + int(binary.LittleEndian.Uint32(l.pending[n:]))
			count++
		}
	}
	if room := l.opts.SegmentBytes - w.size(); int64(n) > room {
		n, count = 0, 0
		for count == 0 || int64(n) < room {
			n += frameHeaderSize + int(binary.LittleEndian.Uint32(l.pending[n:]))
			count++
		}
	}
	switch {
	case n < len(l.pending):
		w.held = append(w.held, l.pending[:n]...)
		l.pending = l.pending[:copy(l.pending, l.pending[n:])]
	case len(w.held) == 0:
		w.held, l.pending = l.pending, w.held
	default:
		w.held = append(w.held, l.pending...)
		l.pending = l.pending[:0]
	}
	w.last = first + uint64(count) - 1
	l.groups = append(l.groups, group{last: w.last, done: l.queued})
	l.queued = nil
	if l.wantQueued != 0 { // the Waits parked on queued now park on the group
		l.wantTaken, l.wantQueued = lowestWanted(l.wantTaken, l.wantQueued), 0
	}
	w.heldN += count
	l.pendingN -= count
	l.space.Broadcast()
	return upTo > w.last && l.pendingN > 0
}

// write writes the held bytes not yet written, at their offset. On failure it truncates the file
// back to the end of the bytes that were already in it (best effort: a retry overwrites the rest
// anyway), so no partial record is left in the middle of the log; a rewrite that failed half-way
// left the bytes it rewrote as they were.
func (l *Log) write(w *writer) error {
	p := w.held[w.wrote:]
	if len(p) == 0 {
		return nil
	}
	off := w.syncedOff + int64(w.wrote)
	if _, err := w.f.WriteAt(p, off); err != nil {
		end := w.syncedOff + int64(max(w.wrote, w.inFile))
		if terr := w.f.Truncate(end); terr != nil {
			l.opts.Logger.Warn("wal: cannot truncate after a failed write; the retry overwrites the partial data", "file", w.path, "offset", end, "err", terr)
		}
		return &ioError{op: "write", path: fmt.Sprintf("%s at offset %d", w.path, off), err: err}
	}
	l.opts.Observer.Wrote(w.heldN-w.wroteN, len(p))
	w.wrote, w.wroteN, w.inFile, w.written = len(w.held), w.heldN, len(w.held), w.last
	return nil
}

// sync fsyncs the current segment, after which the writer no longer needs the held bytes. It
// expects them all written.
func (l *Log) sync(w *writer) error {
	if len(w.held) == 0 {
		w.syncOwed = false
		return nil
	}
	start := time.Now()
	if err := w.f.Sync(); err != nil {
		// The kernel may have dropped the pages it failed to write back: write them again before
		// the next fsync. No truncation: the bytes in the file are the right ones.
		w.wrote, w.wroteN = 0, 0
		return &ioError{op: "fsync", path: w.path, err: err}
	}
	l.opts.Observer.Synced(time.Since(start))
	w.syncedOff += int64(len(w.held))
	w.synced = w.last
	if cap(w.held) > maxHeld {
		w.held = nil // do not keep a buffer grown by a burst
	}
	w.held, w.heldN, w.wrote, w.wroteN, w.inFile, w.syncOwed = w.held[:0], 0, 0, 0, 0, false
	return nil
}

// roll writes and fsyncs the current segment and starts the next one, unless the current one holds
// no record.
func (l *Log) roll(w *writer) error {
	if w.last < w.first {
		return nil
	}
	if err := l.write(w); err != nil {
		return err
	}
	if err := l.sync(w); err != nil {
		return err
	}
	return l.startSegment(w.last + 1)
}

// startSegment creates the segment whose first record will have LSN first, with its header
// fsynced and the directory fsynced, records it in LAST_SEGMENT, and makes it the current one.
func (l *Log) startSegment(first uint64) error {
	path := segmentPath(l.dir, first)
	f, err := l.opts.openFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return &ioError{op: "create", path: path, err: err}
	}
	if _, err = f.WriteAt(segmentHeader(first), 0); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path) // best effort; a retry creates it again
		return &ioError{op: "create", path: path, err: err}
	}
	if err := writeMarker(l.dir, first); err != nil {
		f.Close() // the segment stays, valid and empty; a retry creates it again
		return &ioError{op: "update", path: filepath.Join(l.dir, markerName), err: err}
	}
	w := &l.w
	if w.f != nil {
		if err := w.f.Close(); err != nil { // it is fsynced: nothing is lost
			l.opts.Logger.Warn("wal: closing a full segment", "file", w.path, "err", err)
		}
	}
	w.f, w.path, w.first, w.syncedOff = f, path, first, segHeaderSize
	l.mu.Lock()
	l.segs = append(l.segs, seqFile{path: path, seq: first})
	l.mu.Unlock()
	return nil
}

// publish makes the writer's progress visible (see advance) and marks the log failed (err != nil)
// or healthy, in the same critical section as the release of waiters, so that a Wait that returns
// after a failure sees the log healthy again.
func (l *Log) publish(w *writer, err error) {
	l.mu.Lock()
	wasFailing := l.err != nil
	if err != nil {
		l.err = failure(err)
		l.space.Broadcast()
	} else {
		l.err = nil
	}
	l.advanceLocked(w)
	l.mu.Unlock()
	switch {
	case err != nil && !wasFailing:
		l.opts.Logger.Error("wal: I/O failed; appends are refused, accepted records are kept and retried", "err", err)
	case err == nil && wasFailing:
		l.opts.Logger.Info("wal: I/O works again; appends are accepted")
	}
}

// advance records how far the writer has written and fsynced, and releases the waiters whose
// records became durable.
func (l *Log) advance(w *writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advanceLocked(w)
}

func (l *Log) advanceLocked(w *writer) {
	l.written, l.synced = w.written, w.synced
	durable, n := l.durableLocked(), 0
	for ; n < len(l.groups) && l.groups[n].last <= durable; n++ {
		closeIfSet(l.groups[n].done)
	}
	if n > 0 {
		l.groups = append(l.groups[:0], l.groups[n:]...)
	}
	if len(l.groups) == 0 { // every Wait parked on a group was woken: what it still wants, it asks again
		l.wantTaken = 0
	}
}

// closeIfSet closes ch unless it is nil.
func closeIfSet(ch chan struct{}) {
	if ch != nil {
		close(ch)
	}
}

// failure is the error callers of Append, Wait and Close get while the writer fails with err: it
// wraps ErrFailed and the cause, and names what failed but not where, since it may travel to
// clients (the server log, which gets err itself, has the path).
func failure(err error) error {
	if e, ok := errors.AsType[*ioError](err); ok {
		return fmt.Errorf("%w: cannot %s a log file: %w", ErrFailed, e.op, withoutPath(e.err))
	}
	return fmt.Errorf("%w: %w", ErrFailed, withoutPath(err))
}

// ioError is an I/O failure of the writer. Its message, for the server log, names the file.
type ioError struct {
	op   string // what failed: "write", "fsync", "create", "update", "close"
	path string // the file (and offset) it failed on
	err  error
}

func (e *ioError) Error() string { return fmt.Sprintf("%s %s: %v", e.op, e.path, withoutPath(e.err)) }

func (e *ioError) Unwrap() error { return e.err }

// withoutPath returns the cause of err without the file paths an *fs.PathError or *os.LinkError
// (which the os package returns) put in its message: the error number, which errors.Is still
// finds.
func withoutPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	if le, ok := errors.AsType[*os.LinkError](err); ok {
		return le.Err
	}
	return err
}
