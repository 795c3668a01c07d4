package wal

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// SyncPolicy says when a record counts as durable, so when Wait returns.
type SyncPolicy int

const (
	// SyncAlways: a record is durable once fsynced. Concurrent records share one fsync. Nothing
	// Wait confirmed is lost, even on power failure. The zero value, so the default.
	SyncAlways SyncPolicy = iota
	// SyncInterval: a record is durable once written to the operating system (write(2)), and the
	// log is fsynced every SyncInterval. A killed process loses nothing Wait confirmed; a power
	// failure loses up to SyncInterval of it.
	SyncInterval
	// SyncNone: a record is durable once written to the operating system, which flushes it when it
	// likes. A killed process loses nothing; a power failure loses what the OS had not flushed.
	// The log still fsyncs a segment when it closes it, on Close, and after every 8 MiB written
	// (the writer keeps what it has not fsynced, to write it again if an fsync fails).
	SyncNone
)

// String returns the policy's configuration name: always, interval or none.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Options configure a Log. The zero value is usable: 64 MiB segments, SyncAlways.
type Options struct {
	// SegmentBytes: once the current segment is this large, the next record goes to a new
	// segment file; so a segment exceeds it by less than one record. Default 64 MiB.
	SegmentBytes int64
	// Sync is the durability policy.
	Sync SyncPolicy
	// SyncInterval is the fsync period under SyncInterval. Default 10ms.
	SyncInterval time.Duration
	// MaxPendingBytes bounds the framed records queued but not yet taken by the writer: Append
	// blocks while the queue is this large (one record larger than the bound is still accepted when
	// the queue is empty). Default 64 MiB. The writer holds, besides, the batch it is writing (at
	// most the queue it took) plus up to 8 MiB it wrote but has not fsynced: the log's buffers stay
	// under about 2*MaxPendingBytes + 8 MiB.
	MaxPendingBytes int
	// Logger receives recovery and I/O failure events. Default slog.Default().
	Logger *slog.Logger
	// Observer, when not nil, is told about each write and fsync, for metrics.
	Observer Observer

	// Test hooks: how segment files are opened, and the bounds of the retry backoff after an I/O
	// failure (default 10ms..1s).
	openFile               func(name string, flag int, perm os.FileMode) (file, error)
	minBackoff, maxBackoff time.Duration
}

// Observer is told about the writer's I/O, to feed metrics (bytes written, records per group
// commit, fsync latency). Its methods are called on the writer goroutine and must return quickly.
type Observer interface {
	// Wrote reports one write of a batch of records: how many records and bytes. Records rewritten
	// after an I/O failure are reported again.
	Wrote(records, bytes int)
	// Synced reports one successful fsync that made records durable, and how long it took (the
	// fsyncs of a new segment's header are not reported).
	Synced(d time.Duration)
}

// file is what the writer needs of a segment file; tests substitute one that fails. The writer
// writes at explicit offsets so that a retry overwrites whatever a failed write left behind.
type file interface {
	WriteAt(p []byte, off int64) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

// ErrFailed is wrapped, together with the I/O error, by Err and by Append while the writer cannot
// write or fsync (disk full, EIO). The log keeps the records it accepted and keeps retrying; once a
// retry succeeds it is healthy again.
var ErrFailed = errors.New("wal: log unavailable")

// ErrClosed is returned by Append, Rotate and Wait (for a record that had not become durable) once
// Close was called.
var ErrClosed = errors.New("wal: log closed")

// Log is an open write-ahead log. Its methods are safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	lock *dirLock // the directory's lock, held until Close

	mu       sync.Mutex
	space    sync.Cond // broadcast when pending is taken, and on failure and Close
	pending  []byte    // framed records the writer has not taken yet
	pendingN int       // records in pending
	next     uint64    // LSN of the next Append
	forced   uint64    // every LSN up to this one is taken whatever the holds (Rotate, Close, a full queue)
	holds    []uint64  // the first LSN of each Hold not released, ascending: later records wait
	written  uint64    // every LSN up to this one is written to the OS
	synced   uint64    // every LSN up to this one is fsynced
	err      error     // non-nil (wrapping ErrFailed) while the writer is failing
	closed   bool      // Close was called
	stopped  bool      // the writer goroutine has finished
	appended bool      // Append was called, so Replay may no longer be
	scanBuf  []byte    // the buffer Open read the segments with, for Replay to take over
	segs     []seqFile // the segment files, oldest first; the last one is being written
	// groups are the batches of records the writer took and that are not durable yet, oldest
	// first; queued (nil until a Wait needs it) is closed once the records still queued are
	// durable. Each Wait parks on the channel of the batch that holds its record, so a batch
	// becoming durable wakes its own waiters and no others, in LSN order.
	groups []group
	queued chan struct{}
	// wantQueued and wantTaken are the lowest LSN a parked Wait asks for among the records still
	// queued and among those the writer took (0: none). Under SyncAlways the writer fsyncs only
	// when that releases a Wait (see demandedLocked), and the Wait wakes it: a record nobody
	// waits for yet is fsynced with the next one somebody does wait for.
	wantQueued, wantTaken uint64

	removeMu sync.Mutex // serialises RemoveBefore

	kick      chan struct{}      // (capacity 1) there are queued records to take
	rotate    chan chan rotation // Rotate's requests to the writer
	closing   chan struct{}      // closed by Close
	done      chan struct{}      // closed when the writer goroutine has finished
	closeErr  error              // the writer's final flush result, set before done is closed
	closeOnce sync.Once

	w writer // owned by the writer goroutine
}

type rotation struct {
	last uint64
	err  error
}

// Open opens the log in dir, creating the directory (mode 0700) and a first segment if needed,
// takes the directory's lock (a *LockedError when another process, or another open Log, holds
// it), and recovers the log: a torn write at the end of the last segment is cut off (logged, file
// truncated and fsynced); damage to data written in full, or a missing segment, returns a
// *CorruptionError and changes nothing. Records can then be read with Replay and appended with
// Append. Close releases the lock.
func Open(dir string, opts Options) (_ *Log, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.release()
		}
	}()
	d, err := scanDir(dir)
	if err != nil {
		return nil, err
	}
	if c := d.report.Corruption; c != nil {
		return nil, &CorruptionError{File: c.File, Offset: c.Offset, Reason: c.Reason}
	}
	if t := d.report.TornTail; t != nil {
		if err := d.cutTornTail(); err != nil {
			return nil, err
		}
		opts.Logger.Warn("wal: cut off torn tail, a write a crash interrupted (never acknowledged)",
			"file", t.File, "offset", t.Offset, "bytes", t.Bytes, "reason", t.Reason)
	}
	l := &Log{
		dir:     dir,
		opts:    opts,
		lock:    lock,
		next:    d.report.LastLSN + 1,
		forced:  d.report.LastLSN,
		written: d.report.LastLSN,
		synced:  d.report.LastLSN,
		segs:    d.segs,
		scanBuf: d.buf,
		kick:    make(chan struct{}, 1),
		rotate:  make(chan chan rotation),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	l.space.L = &l.mu
	l.w.last, l.w.written, l.w.synced = d.report.LastLSN, d.report.LastLSN, d.report.LastLSN
	switch last := d.lastSeq(); {
	case len(d.segs) == 0:
		err = l.startSegment(1)
	case !d.hasMarker || d.marker != last:
		if err = writeMarker(dir, last); err == nil {
			err = l.w.resume(opts.openFile, d.segs[len(d.segs)-1], d.lastEnd)
		}
	default:
		err = l.w.resume(opts.openFile, d.segs[len(d.segs)-1], d.lastEnd)
	}
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	go l.run()
	return l, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Sync < SyncAlways || o.Sync > SyncNone {
		return o, fmt.Errorf("wal: unknown sync policy %d", int(o.Sync))
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 10 * time.Millisecond
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.openFile == nil {
		o.openFile = func(name string, flag int, perm os.FileMode) (file, error) { return os.OpenFile(name, flag, perm) }
	}
	if o.minBackoff <= 0 {
		o.minBackoff = 10 * time.Millisecond
	}
	if o.maxBackoff <= 0 {
		o.maxBackoff = time.Second
	}
	return o, nil
}

type nopObserver struct{}

func (nopObserver) Wrote(int, int)       {}
func (nopObserver) Synced(time.Duration) {}

// Append queues rec as the next record and returns its LSN; Wait(lsn) tells when it is durable.
// It does no I/O: it copies rec (the caller may reuse it at once) into the queue the writer
// goroutine drains (see Hold for when the writer leaves a record queued; under SyncAlways the
// writer fsyncs when a Wait asks for a record it wrote), so records appear in the log in the
// order of Append calls. It blocks only while MaxPendingBytes are queued. It
// fails at once, with an error wrapping ErrFailed, while the writer is failing, and with
// ErrClosed after Close.
func (l *Log) Append(rec []byte) (uint64, error) {
	if len(rec) > MaxRecordBytes {
		return 0, fmt.Errorf("wal: record of %d bytes exceeds the maximum of %d", len(rec), MaxRecordBytes)
	}
	sum := crc32.Checksum(rec, castagnoli)
	l.mu.Lock()
	for {
		if l.closed {
			l.mu.Unlock()
			return 0, ErrClosed
		}
		if err := l.err; err != nil {
			l.mu.Unlock()
			return 0, err
		}
		if len(l.pending) == 0 || len(l.pending)+frameHeaderSize+len(rec) <= l.opts.MaxPendingBytes {
			break
		}
		l.wantAllLocked() // whether or not a Wait asked for them: there is no room
		l.space.Wait()
	}
	lsn := l.next
	l.next++
	l.appended = true
	l.pending = appendFrame(l.pending, lsn, sum, rec)
	l.pendingN++
	held := len(l.holds) > 0 // the writer cannot take it yet: the release wakes it
	l.mu.Unlock()
	if !held {
		l.kickWriter()
	}
	return lsn, nil
}

// Hold keeps the records appended from now on (by anyone) queued until release is called, or
// Rotate, Close, or a full queue has the writer take them: a caller that appends several records
// and then waits for the last one holds the log meanwhile, so that they are written and fsynced
// together rather than split between two fsyncs by a writer that woke after the first. Records
// appended before the Hold are not held back. A hold must be short (the appends of one round
// trip): every record after its start waits for it. release is idempotent; call it before
// waiting.
func (l *Log) Hold() (release func()) {
	l.mu.Lock()
	start := l.next
	l.holds = append(l.holds, start)
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.holds = slices.Delete(l.holds, slices.Index(l.holds, start), slices.Index(l.holds, start)+1)
			l.mu.Unlock()
			l.kickWriter()
		})
	}
}

// takeUpToLocked returns the highest LSN the writer may take now.
func (l *Log) takeUpToLocked() uint64 {
	if len(l.holds) == 0 {
		return l.next - 1
	}
	return max(l.holds[0]-1, l.forced)
}

// wantAllLocked has the writer take every queued record, whatever the holds.
func (l *Log) wantAllLocked() {
	if l.forced < l.next-1 {
		l.forced = l.next - 1
		l.kickWriter()
	}
}

// kickWriter wakes the writer, or leaves it a kick if it is busy.
func (l *Log) kickWriter() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Wait blocks until record lsn, and every record before it, is durable under the sync policy, or
// ctx ends (the error then wraps ctx.Err()). While the writer is failing, Wait keeps waiting: the
// record is kept and retried. After Close, a record that did not become durable returns ErrClosed.
// It parks on the channel of the batch of records its record went to disk with, so it wakes once,
// when that batch is durable.
func (l *Log) Wait(ctx context.Context, lsn uint64) error {
	for {
		l.mu.Lock()
		durable, next, stopped := l.durableLocked(), l.next, l.stopped
		var ch chan struct{}
		if lsn > durable && lsn < next && !stopped {
			ch = l.waitChanLocked(lsn)
		}
		l.mu.Unlock()
		if ch != nil && l.opts.Sync == SyncAlways {
			l.kickWriter() // the writer fsyncs for those who wait (see demandedLocked)
		}
		switch {
		case lsn <= durable:
			return nil
		case lsn >= next:
			return fmt.Errorf("wal: wait for LSN %d, which was never appended (last is %d)", lsn, next-1)
		case stopped:
			return fmt.Errorf("wal: wait for LSN %d: %w", lsn, ErrClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wal: wait for LSN %d: %w", lsn, ctx.Err())
		}
	}
}

// group is a batch of records the writer took at once: the last one's LSN, and the channel
// closed once it is durable (nil until a Wait asks for it).
type group struct {
	last uint64
	done chan struct{}
}

// waitChanLocked returns the channel closed once record lsn (appended, not durable) is durable,
// or, when the writer took only part of the records queued with it (a segment filled up),
// earlier: the caller then checks again.
func (l *Log) waitChanLocked(lsn uint64) chan struct{} {
	for i := range l.groups {
		if g := &l.groups[i]; lsn <= g.last {
			if g.done == nil {
				g.done = make(chan struct{})
			}
			l.wantTaken = lowestWanted(l.wantTaken, lsn)
			return g.done
		}
	}
	if l.queued == nil {
		l.queued = make(chan struct{})
	}
	l.wantQueued = lowestWanted(l.wantQueued, lsn)
	return l.queued
}

// lowestWanted returns the lower of the LSNs a Wait asks for, want (0: none) and lsn.
func lowestWanted(want, lsn uint64) uint64 {
	if want == 0 {
		return lsn
	}
	return min(want, lsn)
}

// demandedLocked reports whether a parked Wait asks for a record up to last, the last one the
// writer took (and wrote): an fsync now would release it. An fsync that releases nobody is
// skipped, so that it does not delay the one that will: the writer that wakes between two
// round trips' appends (each under a Hold) takes only the records before the second Hold, and
// the first round trip's Wait is for a record after it.
func (l *Log) demandedLocked(last uint64) bool {
	return l.wantTaken != 0 && l.wantTaken <= last
}

// Durable returns the highest LSN such that it and every LSN before it are durable under the sync
// policy (fsynced under SyncAlways, written to the OS otherwise).
func (l *Log) Durable() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durableLocked()
}

func (l *Log) durableLocked() uint64 {
	if l.opts.Sync == SyncAlways {
		return l.synced
	}
	return l.written
}

// LastLSN returns the LSN of the last record appended, or recovered by Open; 0 for an empty log.
func (l *Log) LastLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// Err returns the I/O error the writer is failing with (wrapping ErrFailed), or nil when healthy.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Replay calls fn, in order, for each record in the log with an LSN greater than after. Each
// segment is read into a buffer of its own, so rec stays valid after the call (the caller may
// hand records to other goroutines) and must not be modified. It is for recovery: it must be called before the first Append, and
// it fails with a *CorruptionError if records after `after` are missing (the log starts later)
// or if after is beyond the end of the log (the caller's state is newer than the log: its end is
// missing, and new LSNs would collide with the caller's). fn's error stops the replay and is
// returned wrapped.
func (l *Log) Replay(after uint64, fn func(lsn uint64, rec []byte) error) error {
	return l.replay(after, fn, nil)
}

// ReplayReusing is Replay reading every segment into one buffer, the one Open scanned the log
// with, instead of a fresh one each: recovery then touches no new memory for the log (on a VM a
// page fault costs microseconds, and a 64 MiB segment is 16 384 pages). A record stays valid
// only until settle is called, which ReplayReusing does before it reads the next segment; settle
// must return once nothing uses a record handed out before the call, and its error stops the
// replay.
func (l *Log) ReplayReusing(after uint64, fn func(lsn uint64, rec []byte) error, settle func() error) error {
	return l.replay(after, fn, settle)
}

// replay is Replay, or ReplayReusing when settle is not nil.
func (l *Log) replay(after uint64, fn func(lsn uint64, rec []byte) error, settle func() error) error {
	l.mu.Lock()
	appended, last, segs, buf := l.appended, l.next-1, slices.Clone(l.segs), l.scanBuf
	l.scanBuf = nil
	l.mu.Unlock()
	switch {
	case appended:
		return errors.New("wal: Replay called after Append")
	case after > last:
		return fmt.Errorf("wal: replay after LSN %d: %w", after, &CorruptionError{File: l.dir,
			Reason: fmt.Sprintf("the log ends at LSN %d, before LSN %d: the segments after it are missing", last, after)})
	case after+1 < segs[0].seq:
		return fmt.Errorf("wal: replay after LSN %d: %w", after, &CorruptionError{File: l.dir,
			Reason: fmt.Sprintf("the log starts at LSN %d: records %d..%d are missing", segs[0].seq, after+1, segs[0].seq-1)})
	}
	read := false // whether buf holds records handed out
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].seq-1 <= after {
			continue // every record of s is <= after
		}
		switch {
		case settle == nil:
			buf = nil
		case read:
			if err := settle(); err != nil {
				return err
			}
		}
		var err error
		if buf, err = readFile(s.path, buf); err != nil {
			return fmt.Errorf("wal: replay: %w", err)
		}
		read = true
		sc, err := scanSegment(buf, s.seq, i == len(segs)-1, func(lsn uint64, rec []byte) error {
			if lsn <= after {
				return nil
			}
			if err := fn(lsn, rec); err != nil {
				return fmt.Errorf("wal: replay LSN %d: %w", lsn, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if dmg := sc.damage; dmg != nil {
			return fmt.Errorf("wal: replay: %w", &CorruptionError{File: s.path, Offset: dmg.Offset, Reason: dmg.Reason + " (changed since Open)"})
		}
	}
	return nil
}

// Rotate makes the writer write what is queued, fsync and close the current segment and start a
// new one (unless the current segment holds no record, when nothing changes). It returns the LSN
// of the last record in the closed segments: every record up to it can be removed by
// RemoveBefore once a snapshot covers it.
func (l *Log) Rotate() (uint64, error) {
	l.mu.Lock()
	l.wantAllLocked()
	l.mu.Unlock()
	reply := make(chan rotation, 1)
	select {
	case l.rotate <- reply:
	case <-l.done:
		return 0, ErrClosed
	}
	r := <-reply
	return r.last, r.err
}

// RemoveBefore deletes the segment files all of whose records have an LSN <= lsn, oldest first,
// and never the segment being written. It is for after a snapshot covering lsn was written.
func (l *Log) RemoveBefore(lsn uint64) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	l.mu.Lock()
	n := 0
	for n+1 < len(l.segs) && l.segs[n+1].seq-1 <= lsn {
		n++
	}
	victims := slices.Clone(l.segs[:n])
	l.mu.Unlock()
	removed := 0
	var err error
	for _, s := range victims {
		if err = os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("wal: %w", err)
			break
		}
		err = nil
		removed++
	}
	l.mu.Lock()
	l.segs = slices.Delete(l.segs, 0, removed)
	l.mu.Unlock()
	if removed == 0 {
		return err
	}
	if serr := syncDir(l.dir); serr != nil {
		err = errors.Join(err, fmt.Errorf("wal: %w", serr))
	}
	return err
}

// Close stops accepting records, waits for the writer to write and fsync everything queued (one
// last attempt if it is failing) and stops it. It returns the error of that final flush, if any;
// records it could not write are not durable and their Wait returns ErrClosed. Then it releases
// the directory's lock. Close is idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.space.Broadcast()
		l.mu.Unlock()
		close(l.closing)
		<-l.done
		if err := l.lock.release(); err != nil && l.closeErr == nil {
			l.closeErr = fmt.Errorf("wal: release the lock of %s: %w", l.dir, err)
		}
	})
	return l.closeErr
}
