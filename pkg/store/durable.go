package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/putallkv/putallkv/pkg/tracing"
	"github.com/putallkv/putallkv/pkg/wal"
)

// DurableOptions configure a Durable engine.
type DurableOptions struct {
	Options
	// Dir holds the write-ahead log and the snapshots.
	Dir string
	// WAL configures the log (sync policy, segment size); its Observer is chained after the
	// engine's own bookkeeping.
	WAL wal.Options
	// SnapshotBytes triggers a background snapshot once this many bytes have been logged since
	// the last one, or fewer once the newest snapshot is smaller (see snapshotLimit); 0 takes
	// snapshots only when asked (Snapshot).
	SnapshotBytes int64
	// Recovered receives, during OpenDurable, every tag recovered: for a batch replayed from the
	// log, its tag, revision, keys and results (in batch order); for a tag a snapshot saved (see
	// SnapshotTags), the tag with revision 0 and no keys or results. All are the callee's.
	Recovered func(tag []byte, rev int64, keys []string, results []Result)
	// SnapshotTags returns tags to save in each snapshot (what the service still needs of the
	// tagged batches the snapshot makes redundant in the log); nil saves none.
	SnapshotTags func() [][]byte
	// Observer is told of snapshots and recovery; nil tells no one.
	Observer DurabilityObserver
}

// DurabilityObserver receives the timings of recovery and snapshots (for metrics).
type DurabilityObserver interface {
	Recovered(d time.Duration, records uint64, keys int64)
	Snapshotted(d time.Duration, keys int64, err error)
}

// Durable is an engine whose writes are logged to a write-ahead log before they are
// acknowledged, with snapshots that bound the log and recovery at open. It composes a Memory,
// which holds the keys and draws revisions, and a wal.Log, which keeps every batch the Memory
// commits (Durable is the Memory's committer) until a snapshot holds it.
type Durable struct {
	mem  *Memory
	log  *wal.Log
	opts DurableOptions
	// journal is the log as the write path uses it: d.log, or in tests a stand-in that fails.
	journal journal
	// lastLSN is the log position of the latest batch committed: a reader waits for it.
	lastLSN atomic.Uint64

	snapMu       sync.Mutex // one snapshot at a time
	snapLSN      uint64     // the LSN of the newest snapshot, verified when loaded or written (under snapMu)
	snapRunning  atomic.Bool
	closing      atomic.Bool
	loggedBytes  atomic.Int64 // since the last snapshot
	snapBytes    atomic.Int64 // the newest snapshot's size (0: none yet)
	snapshotting sync.WaitGroup
}

// journal is what the write path needs of the log (wal.Log is one): Append keeps records in call
// order and never loses one it accepted; Wait blocks until the record at lsn is durable; Err is
// non-nil while the log refuses records; Hold keeps the records appended from then on from the
// writer until released or waited for.
type journal interface {
	Append(rec []byte) (lsn uint64, err error)
	Wait(ctx context.Context, lsn uint64) error
	Err() error
	Hold() (release func())
}

var (
	_ Engine    = (*Durable)(nil)
	_ committer = (*Durable)(nil)
	_ journal   = (*wal.Log)(nil)
)

// OpenDurable opens (or creates) the data directory, recovers the newest valid snapshot and
// the log after it, and returns the engine ready for writes. A corrupt log stops it with an
// error wrapping *wal.CorruptionError.
func OpenDurable(opts DurableOptions) (_ *Durable, err error) {
	start := time.Now()
	d := &Durable{opts: opts}
	if d.mem, err = newMemory(opts.Options, d); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = d.mem.Close()
		}
	}()
	walOpts := opts.WAL
	walOpts.Observer = d.observeWAL(opts.WAL.Observer)
	if d.log, err = wal.Open(opts.Dir, walOpts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = d.log.Close()
		}
	}()
	rs := newRestorer(d.mem)
	if d.snapLSN, err = d.loadSnapshot(rs); err != nil {
		rs.finish()
		return nil, err
	}
	var records uint64
	var r record
	err = d.log.ReplayReusing(d.snapLSN, func(_ uint64, rec []byte) error {
		records++
		return d.replay(rec, &r, rs)
	}, rs.settle)
	rs.finish()
	if err != nil {
		return nil, fmt.Errorf("store: replaying %s: %w", opts.Dir, err)
	}
	d.lastLSN.Store(d.log.LastLSN())
	d.journal = d.log
	d.mem.startSweeping(opts.SweepInterval)
	if o := opts.Observer; o != nil {
		o.Recovered(time.Since(start), records, d.mem.Stats().Keys)
	}
	return d, nil
}

// prepare implements committer: it encodes the batch's log record, its revision left to set.
func (d *Durable) prepare(buf []byte, b Batch, results []Result) []byte {
	return appendRecord(buf, b, results)
}

// commit implements committer: it sets the record's revision and appends it to the log, and
// returns its log position.
func (d *Durable) commit(rec []byte, rev int64) (uint64, error) {
	setRecordRevision(rec, rev)
	lsn, err := d.journal.Append(rec)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrJournal, err)
	}
	d.lastLSN.Store(lsn)
	return lsn, nil
}

// Apply implements Engine. The write is visible once applied; it is acknowledged once durable.
// Readers wait for the durability of what they see (GetAll), so no one observes a write a crash
// could take back.
func (d *Durable) Apply(ctx context.Context, b Batch, results []Result) (Outcome, error) {
	out, lsn, err := d.mem.apply(b, results)
	if err != nil || lsn == 0 {
		return out, err
	}
	return out, d.waitDurable(ctx, lsn)
}

// waitDurable waits for the log to be durable up to lsn (the durability stage); its failure
// wraps ErrNotDurable.
func (d *Durable) waitDurable(ctx context.Context, lsn uint64) error {
	ctx, span := tracing.Start(ctx, tracing.StageDurability) // the group commit's wait
	err := d.journal.Wait(ctx, lsn)
	if err != nil {
		tracing.Fail(span, "", err.Error())
	}
	span.End()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotDurable, err)
	}
	return nil
}

// GetAll implements Engine. With a healthy log it shows nothing a crash could take back: it
// waits until the log is durable up to the latest commit, which covers the revision read. A
// failing log keeps its pending records and retries them; reads then serve what memory holds.
func (d *Durable) GetAll(ctx context.Context, keys []string, items []Item) (int64, error) {
	rev, err := d.mem.GetAll(ctx, keys, items)
	if err != nil {
		return 0, err
	}
	if err := d.readDurable(ctx); err != nil {
		return 0, err
	}
	return rev, nil
}

// Scan implements Engine: the Memory's page, returned once every write it may show is durable.
func (d *Durable) Scan(ctx context.Context, req ScanRequest) (ScanPage, error) {
	page, err := d.mem.Scan(ctx, req)
	if err != nil {
		return ScanPage{}, err
	}
	if err := d.readDurable(ctx); err != nil {
		return ScanPage{}, err
	}
	return page, nil
}

// readDurable waits, while the journal is healthy, until every write a read that just ended may
// have seen is durable. The position is loaded after the read's revision: commit stores a
// batch's position before Memory publishes the batch's revision, so it covers the read.
func (d *Durable) readDurable(ctx context.Context) error {
	if lsn := d.lastLSN.Load(); lsn != 0 && d.journal.Err() == nil {
		if err := d.journal.Wait(ctx, lsn); err != nil {
			return fmt.Errorf("%w: %w", ErrNotDurable, err)
		}
	}
	return nil
}

// WaitsForDurability implements Engine: Apply returns once the log has the write durable.
func (d *Durable) WaitsForDurability() bool { return true }

// Stats implements Engine.
func (d *Durable) Stats() Stats { return d.mem.Stats() }

// walObserver counts logged bytes to trigger snapshots, then passes events on.
type walObserver struct {
	d    *Durable
	next wal.Observer
}

func (o walObserver) Wrote(records, n int) {
	if o.next != nil {
		o.next.Wrote(records, n)
	}
	if limit := o.d.snapshotLimit(); limit > 0 && o.d.loggedBytes.Add(int64(n)) >= limit {
		o.d.snapshotInBackground()
	}
}

// snapshotLimit is how much log since the last snapshot starts the next one: the newest
// snapshot's size, between SnapshotBytes/16 and SnapshotBytes. A restart loads the snapshot and
// replays the log after it, and a logged write costs recovery several times what a snapshot
// entry does; so the log is kept no longer than the snapshot (as Redis rewrites its AOF when it
// has doubled), which bounds a restart by about twice the data, not by SnapshotBytes of log,
// while a small store still logs SnapshotBytes/16 between snapshots rather than snapshotting
// at every write.
func (d *Durable) snapshotLimit() int64 {
	limit := d.opts.SnapshotBytes
	if size := d.snapBytes.Load(); size > 0 {
		limit = min(limit, max(size, limit/16))
	}
	return limit
}

func (o walObserver) Synced(t time.Duration) {
	if o.next != nil {
		o.next.Synced(t)
	}
}

func (d *Durable) observeWAL(next wal.Observer) wal.Observer { return walObserver{d: d, next: next} }

// snapshotInBackground starts a snapshot unless one is running.
func (d *Durable) snapshotInBackground() {
	if d.closing.Load() || !d.snapRunning.CompareAndSwap(false, true) {
		return
	}
	d.snapshotting.Add(1)
	go func() {
		defer d.snapshotting.Done()
		defer d.snapRunning.Store(false)
		_ = d.Snapshot(context.Background()) // logged, and reported to the observer
	}()
}

// replay re-applies one logged batch, decoded into r: its applied writes at its revision,
// through rs (the writes' keys and values alias rec, which stays valid until rs settles: the
// log reads the next segment into the same buffer only then).
func (d *Durable) replay(rec []byte, r *record, rs *restorer) error {
	if err := decodeRecord(rec, r); err != nil {
		return err
	}
	for i := range r.writes {
		if r.results[i].Code != OK {
			continue
		}
		rs.add(r.writes[i], r.rev) // the shard copies the key and value out of the log's buffer
	}
	d.mem.raiseRevision(r.rev)
	if len(r.tag) > 0 && d.opts.Recovered != nil {
		keys := make([]string, len(r.writes))
		for i := range r.writes {
			keys[i] = strings.Clone(r.writes[i].Key)
		}
		d.opts.Recovered(bytes.Clone(r.tag), r.rev, keys, slices.Clone(r.results))
	}
	return nil
}

// The snapshot body: a version, the revision of the cut, then items, each a kind byte (snapBlock
// in version 2, snapEntry in version 1, snapTag) and its fields, then snapEnd. Its layout is in
// the package documentation, "On-disk format". Version 2 writes the entries in blocks laid out as
// the arena is, so that recovery adopts them without copying (Memory.adoptBlocks); version 1
// snapshots are still read.
const (
	snapshotVersion = 2
	snapEnd         = 0
	snapEntry       = 1
	snapTag         = 2
	snapBlock       = 3
	// snapBlockBytes is the size a block is cut at (an entry larger than it has a block of its
	// own): a block becomes an arena chunk, and this is the largest the arena makes.
	snapBlockBytes = maxChunk
)

// Snapshot writes a snapshot of the store while writes go on, then drops what neither it nor the
// previous snapshot needs. The snapshot is fuzzy (shards are copied one by one), so it is cut at a
// log position: recovery replays every record after the cut, and re-applying a batch the copy
// already holds is harmless. Before the snapshot is published, every write it may hold is made
// durable, so recovery can never see part of a batch; it is verified when written. The previous
// snapshot and the log after it are kept until the next snapshot, so that recovery can fall back
// to them should this one be damaged on disk: the log holds what was written since the snapshot
// before last.
func (d *Durable) Snapshot(ctx context.Context) (err error) {
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	start := time.Now()
	var keys int64
	defer func() {
		if o := d.opts.Observer; o != nil {
			o.Snapshotted(time.Since(start), keys, err)
		}
		if log := d.opts.WAL.Logger; log != nil {
			if err != nil {
				log.Error("snapshot failed", "dir", d.opts.Dir, "err", err)
			} else {
				log.Info("snapshot taken", "dir", d.opts.Dir, "keys", keys, "duration", time.Since(start).String())
			}
		}
	}()
	var cutRev int64
	var cutLSN uint64
	d.mem.between(func(rev int64) { cutRev, cutLSN = rev, d.lastLSN.Load() })
	prev := d.snapLSN
	if err := d.log.Wait(ctx, cutLSN); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	d.loggedBytes.Store(0)
	path, err := wal.WriteSnapshot(d.opts.Dir, cutLSN, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var err error
		if keys, err = d.writeSnapshot(bw, cutRev); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return d.log.Wait(ctx, d.lastLSN.Load())
	})
	if err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	d.snapLSN = cutLSN
	if fi, err := os.Stat(path); err == nil {
		d.snapBytes.Store(fi.Size())
	}
	if _, err := d.log.Rotate(); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	if err := d.log.RemoveBefore(prev); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	return wal.RemoveSnapshotsBefore(d.opts.Dir, prev)
}

// writeSnapshot writes the body: every resident entry, shard by shard, in blocks, then the tags.
func (d *Durable) writeSnapshot(w *bufio.Writer, cutRev int64) (int64, error) {
	var buf []byte
	buf = binary.AppendUvarint(buf, snapshotVersion)
	buf = binary.AppendVarint(buf, cutRev)
	if _, err := w.Write(buf); err != nil {
		return 0, err
	}
	block := make([]byte, 0, snapBlockBytes)
	flush := func() error {
		if len(block) == 0 {
			return nil
		}
		buf = binary.AppendUvarint(append(buf[:0], snapBlock), uint64(len(block)))
		if _, err := w.Write(buf); err != nil {
			return err
		}
		_, err := w.Write(block)
		block = block[:0]
		return err
	}
	keys, err := d.mem.scan(func(key, value []byte, version, expiresAtMs int64) error {
		h := entryHeader{version: version, expiresAtMs: expiresAtMs, keyLen: uint32(len(key)), valLen: uint32(len(value))}
		if len(block) > 0 && len(block)+h.size() > snapBlockBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		block = slices.Grow(block, h.size())
		putEntry(block[len(block):len(block)+h.size()], h, key, value)
		block = block[:len(block)+h.size()]
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return 0, err
	}
	if d.opts.SnapshotTags != nil {
		for _, tag := range d.opts.SnapshotTags() {
			buf = appendBytes(append(buf[:0], snapTag), tag)
			if _, err := w.Write(buf); err != nil {
				return 0, err
			}
		}
	}
	return keys, w.WriteByte(snapEnd)
}

// loadSnapshot restores the newest valid snapshot, if any, and returns its log position. Version
// 2 entries (in blocks) are adopted by the store once every item is read; version 1 entries go
// through rs, which the caller finishes.
func (d *Durable) loadSnapshot(rs *restorer) (uint64, error) {
	lsn, body, err := wal.ReadLatestSnapshot(d.opts.Dir, d.opts.WAL.Logger)
	if err != nil || body == nil {
		return 0, err
	}
	d.snapBytes.Store(int64(len(body)))
	dec := decoder{buf: body}
	version := dec.uvarint()
	if version != 1 && version != snapshotVersion {
		return 0, fmt.Errorf("store: snapshot %d: format version %d", lsn, version)
	}
	d.mem.raiseRevision(dec.varint())
	var blocks [][]byte
	for dec.err == nil {
		switch kind := dec.byte(); {
		case kind == snapEnd:
			if dec.err == nil && len(dec.buf) != 0 {
				return 0, fmt.Errorf("store: snapshot %d: %d bytes after the end", lsn, len(dec.buf))
			}
			if dec.err != nil {
				return 0, fmt.Errorf("store: snapshot %d: %w", lsn, dec.err)
			}
			maxVersion, err := d.mem.adoptBlocks(blocks)
			if err != nil {
				return 0, fmt.Errorf("store: snapshot %d: %w", lsn, err)
			}
			d.mem.raiseRevision(maxVersion)
			return lsn, nil
		case kind == snapBlock && version == 2:
			if blk := dec.bytes(); dec.err == nil {
				blocks = append(blocks, blk)
			}
		case kind == snapEntry && version == 1:
			w := Write{Key: string(dec.bytes()), Value: dec.bytes()}
			entryVersion := dec.varint()
			w.ExpiresAtMs = dec.varint()
			if dec.err == nil {
				rs.add(w, entryVersion)
				d.mem.raiseRevision(entryVersion)
			}
		case kind == snapTag:
			tag := dec.bytes()
			if dec.err == nil && d.opts.Recovered != nil {
				d.opts.Recovered(bytes.Clone(tag), 0, nil, nil)
			}
		default:
			return 0, fmt.Errorf("store: snapshot %d: unknown item kind %d in format version %d", lsn, kind, version)
		}
	}
	return 0, fmt.Errorf("store: snapshot %d: %w", lsn, dec.err)
}

// Err reports whether the log is refusing writes (disk full, I/O error), and why.
func (d *Durable) Err() error { return d.log.Err() }

// Close waits for a background snapshot, closes the log (flushing what is pending) and stops
// the sweeper.
func (d *Durable) Close() error {
	d.closing.Store(true)
	d.snapMu.Lock() // a snapshot starting now sees closing; one running finishes first
	d.snapMu.Unlock()
	d.snapshotting.Wait()
	return errors.Join(d.log.Close(), d.mem.Close())
}
