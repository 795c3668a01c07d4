package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"putallkv/pkg/wal"
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
	// the last one; 0 takes snapshots only when asked (Snapshot).
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

// Durable is a Memory engine whose writes are logged to a write-ahead log before they are
// acknowledged, with snapshots that bound the log and recovery at open.
type Durable struct {
	*Memory
	log  *wal.Log
	opts DurableOptions

	snapMu       sync.Mutex // one snapshot at a time
	snapLSN      uint64     // the LSN of the newest snapshot, verified when loaded or written (under snapMu)
	snapRunning  atomic.Bool
	closing      atomic.Bool
	loggedBytes  atomic.Int64 // since the last snapshot
	snapshotting sync.WaitGroup
}

var _ Engine = (*Durable)(nil)

// OpenDurable opens (or creates) the data directory, recovers the newest valid snapshot and
// the log after it, and returns the engine ready for writes. A corrupt log stops it with an
// error wrapping *wal.CorruptionError.
func OpenDurable(opts DurableOptions) (_ *Durable, err error) {
	start := time.Now()
	m, err := NewMemory(opts.Options)
	if err != nil {
		return nil, err
	}
	d := &Durable{Memory: m, opts: opts}
	defer func() {
		if err != nil {
			_ = m.Close()
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
	if d.snapLSN, err = d.loadSnapshot(); err != nil {
		return nil, err
	}
	var records uint64
	err = d.log.Replay(d.snapLSN, func(_ uint64, rec []byte) error {
		records++
		return d.replay(rec)
	})
	if err != nil {
		return nil, fmt.Errorf("store: replaying %s: %w", opts.Dir, err)
	}
	m.lastLSN.Store(d.log.LastLSN())
	m.journal = d.log
	if o := opts.Observer; o != nil {
		o.Recovered(time.Since(start), records, m.keys.Load())
	}
	return d, nil
}

// walObserver counts logged bytes to trigger snapshots, then passes events on.
type walObserver struct {
	d    *Durable
	next wal.Observer
}

func (o walObserver) Wrote(records, n int) {
	if o.next != nil {
		o.next.Wrote(records, n)
	}
	if limit := o.d.opts.SnapshotBytes; limit > 0 && o.d.loggedBytes.Add(int64(n)) >= limit {
		o.d.snapshotInBackground()
	}
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

// replay re-applies one logged batch: its applied writes at its revision.
func (d *Durable) replay(rec []byte) error {
	r, err := decodeRecord(rec)
	if err != nil {
		return err
	}
	for i := range r.writes {
		if r.results[i].Code != OK {
			continue
		}
		d.restore(&r.writes[i], r.rev) // the shard copies the value out of the log's buffer
	}
	d.raiseRevision(r.rev)
	if len(r.tag) > 0 && d.opts.Recovered != nil {
		keys := make([]string, len(r.writes))
		for i := range r.writes {
			keys[i] = r.writes[i].Key
		}
		d.opts.Recovered(bytes.Clone(r.tag), r.rev, keys, r.results)
	}
	return nil
}

// restore applies w at version unconditionally, as recovery does.
func (d *Durable) restore(w *Write, version int64) {
	h := maphash.String(d.seed, w.Key)
	sh := d.shardOf(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := sh.find(w.Key, h)
	d.used.Add(sh.growth(w, l)) // recovery restores what was acknowledged, quota or not
	d.keys.Add(sh.write(w, h, l, version))
	sh.compactIfWasteful()
}

func (d *Durable) raiseRevision(rev int64) {
	if rev > d.rev.Load() {
		d.rev.Store(rev)
	}
}

// The snapshot body: a format version, the revision of the cut, then items, each a kind byte
// (snapEntry: key, value, version, expires_at_ms; snapTag: tag) and snapEnd.
const (
	snapshotVersion = 1
	snapEnd         = 0
	snapEntry       = 1
	snapTag         = 2
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
	d.seqMu.Lock()
	cutRev, cutLSN := d.rev.Load(), d.lastLSN.Load()
	d.seqMu.Unlock()
	prev := d.snapLSN
	if err := d.log.Wait(ctx, cutLSN); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	d.loggedBytes.Store(0)
	_, err = wal.WriteSnapshot(d.opts.Dir, cutLSN, func(w io.Writer) error {
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
	if _, err := d.log.Rotate(); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	if err := d.log.RemoveBefore(prev); err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	return wal.RemoveSnapshotsBefore(d.opts.Dir, prev)
}

// writeSnapshot writes the body: every live entry, shard by shard, then the tags.
func (d *Durable) writeSnapshot(w *bufio.Writer, cutRev int64) (int64, error) {
	var buf []byte
	buf = binary.AppendUvarint(buf, snapshotVersion)
	buf = binary.AppendVarint(buf, cutRev)
	if _, err := w.Write(buf); err != nil {
		return 0, err
	}
	type kept struct {
		key, value           []byte
		version, expiresAtMs int64
	}
	var batch []kept
	var keys int64
	for i := range d.shards {
		sh := &d.shards[i]
		batch = batch[:0]
		sh.mu.RLock()
		sh.each(func(rk residentKey) { // arena bytes never change: no copy needed
			batch = append(batch, kept{rk.key, rk.value, rk.header.version, rk.header.expiresAtMs})
		})
		sh.mu.RUnlock()
		for _, e := range batch {
			buf = append(buf[:0], snapEntry)
			buf = appendBytes(buf, e.key)
			buf = appendBytes(buf, e.value)
			buf = binary.AppendVarint(buf, e.version)
			buf = binary.AppendVarint(buf, e.expiresAtMs)
			if _, err := w.Write(buf); err != nil {
				return 0, err
			}
		}
		keys += int64(len(batch))
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

// loadSnapshot restores the newest valid snapshot, if any, and returns its log position.
func (d *Durable) loadSnapshot() (uint64, error) {
	lsn, r, err := wal.OpenLatestSnapshot(d.opts.Dir, d.opts.WAL.Logger)
	if err != nil || r == nil {
		return 0, err
	}
	defer r.Close()
	body, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	dec := decoder{buf: body}
	if v := dec.uvarint(); v != snapshotVersion {
		return 0, fmt.Errorf("store: snapshot %d: format version %d", lsn, v)
	}
	d.raiseRevision(dec.varint())
	for dec.err == nil {
		switch kind := dec.byte(); kind {
		case snapEnd:
			if dec.err == nil && len(dec.buf) != 0 {
				return 0, fmt.Errorf("store: snapshot %d: %d bytes after the end", lsn, len(dec.buf))
			}
			return lsn, dec.err
		case snapEntry:
			w := Write{Key: string(dec.bytes()), Value: dec.bytes()}
			version := dec.varint()
			w.ExpiresAtMs = dec.varint()
			if dec.err == nil {
				d.restore(&w, version)
				d.raiseRevision(version)
			}
		case snapTag:
			tag := dec.bytes()
			if dec.err == nil && d.opts.Recovered != nil {
				d.opts.Recovered(bytes.Clone(tag), 0, nil, nil)
			}
		default:
			return 0, fmt.Errorf("store: snapshot %d: unknown item kind %d", lsn, kind)
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
	return errors.Join(d.log.Close(), d.Memory.Close())
}
