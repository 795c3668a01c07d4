package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		minSegs int
	}{
		{"one segment", Options{}, 1},
		{"segment rolls", Options{SegmentBytes: 8 << 10}, 10},
		{"interval", Options{SegmentBytes: 8 << 10, Sync: SyncInterval}, 10},
		{"none", Options{SegmentBytes: 8 << 10, Sync: SyncNone}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRand(t)
			recs := randomRecords(r, 400, 1000)
			dir := t.TempDir()
			l := mustOpen(t, dir, tc.opts)
			for i := 0; i < 300; i += 50 { // in rounds, so that the writer holds unsynced records between them
				appendAll(t, l, recs[i:i+50])
			}
			mustClose(t, l)
			if n := len(segmentFiles(t, dir)); n < tc.minSegs {
				t.Fatalf("%d segment files; want at least %d", n, tc.minSegs)
			}

			l = mustOpen(t, dir, tc.opts)
			if got := l.LastLSN(); got != 300 {
				t.Fatalf("LastLSN after reopen = %d; want 300", got)
			}
			equalRecords(t, "Replay(0)", replayAll(t, l, 0), recs[:300])
			for _, after := range []uint64{1, 17, 150, 299, 300} {
				equalRecords(t, fmt.Sprintf("Replay(%d)", after), replayAll(t, l, after), recs[after:300])
			}
			appendAll(t, l, recs[300:]) // LSNs continue at 301
			mustClose(t, l)

			l = mustOpen(t, dir, tc.opts)
			defer mustClose(t, l)
			equalRecords(t, "Replay(0) after more appends", replayAll(t, l, 0), recs)
		})
	}
}

func TestEmptyAndLargeRecords(t *testing.T) {
	recs := [][]byte{{}, make([]byte, 3<<20), {}, make([]byte, maxHeld+1), []byte("x")}
	dir := buildLog(t, Options{SegmentBytes: 1 << 20, Sync: SyncNone}, recs)
	l := mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	equalRecords(t, "Replay", replayAll(t, l, 0), recs)
	if _, err := l.Append(make([]byte, MaxRecordBytes+1)); err == nil {
		t.Fatal("Append of a record over MaxRecordBytes succeeded")
	}
}

func TestGroupCommit(t *testing.T) {
	const goroutines, perGoroutine = 32, 20
	// The first fsync blocks until every goroutine has appended its first record, so those records
	// are necessarily committed together: at most 2 fsyncs for the first round.
	release, armed := make(chan struct{}), make(chan struct{})
	var first sync.Once
	ffs := &faultyFS{syncFault: func() error {
		select {
		case <-armed: // not the fsyncs of Open
			first.Do(func() { <-release })
		default:
		}
		return nil
	}}
	obs := &countingObserver{}
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Observer: obs, openFile: ffs.open})
	close(armed)

	var appended, done sync.WaitGroup
	appended.Add(goroutines)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		done.Go(func() {
			for k := range perGoroutine {
				rec := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(g)), uint32(k))
				lsn, err := l.Append(rec)
				if k == 0 {
					appended.Done()
				}
				if err == nil {
					err = l.Wait(context.Background(), lsn)
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d record %d: %w", g, k, err)
					return
				}
			}
		})
	}
	appended.Wait()
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustClose(t, l)

	total := int64(goroutines * perGoroutine)
	syncs := obs.syncs.Load()
	t.Logf("%d records, %d writes, %d fsyncs: %.1f records per fsync", total, obs.writes.Load(), syncs, float64(total)/float64(syncs))
	if syncs >= total {
		t.Errorf("%d fsyncs for %d records: appenders did not share fsyncs", syncs, total)
	}
	if got := obs.records.Load(); got != total {
		t.Errorf("Observer saw %d records written; want %d", got, total)
	}
	if got, want := obs.bytes.Load(), total*(frameHeaderSize+8); got != want {
		t.Errorf("Observer saw %d bytes written; want %d", got, want)
	}

	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	next := make([]uint32, goroutines) // each goroutine's records must appear once each, in its order
	for _, rec := range replayAll(t, l, 0) {
		g, k := binary.LittleEndian.Uint32(rec), binary.LittleEndian.Uint32(rec[4:])
		if k != next[g] {
			t.Fatalf("goroutine %d: record %d where %d was expected", g, k, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != perGoroutine {
			t.Errorf("goroutine %d: %d records after reopen; want %d", g, n, perGoroutine)
		}
	}
}

func TestRotateAndRemoveBefore(t *testing.T) {
	recs := randomRecords(newRand(t), 30, 100)
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	rotate := func(want uint64, wantSegs int) {
		t.Helper()
		got, err := l.Rotate()
		if err != nil || got != want {
			t.Fatalf("Rotate() = %d, %v; want %d", got, err, want)
		}
		if n := len(segmentFiles(t, dir)); n != wantSegs {
			t.Fatalf("%d segment files after Rotate; want %d", n, wantSegs)
		}
	}
	remove := func(lsn uint64, wantFirst string) {
		t.Helper()
		if err := l.RemoveBefore(lsn); err != nil {
			t.Fatalf("RemoveBefore(%d): %v", lsn, err)
		}
		if files := segmentFiles(t, dir); !strings.HasSuffix(files[0], wantFirst) {
			t.Fatalf("after RemoveBefore(%d) the oldest segment is %s; want %s", lsn, files[0], wantFirst)
		}
	}
	rotate(0, 1) // nothing to close
	appendAll(t, l, recs[:10])
	rotate(10, 2)
	appendAll(t, l, recs[10:20])
	rotate(20, 3)
	rotate(20, 3) // the current segment is empty: no new one
	remove(9, "00000000000000000001.wal")
	remove(15, "00000000000000000011.wal") // 1..10 go, 11..20 stay
	remove(20, "00000000000000000021.wal")
	remove(1000, "00000000000000000021.wal") // never the current segment
	mustClose(t, l)

	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	if got := l.LastLSN(); got != 20 {
		t.Fatalf("LastLSN after removing every segment but the empty current one = %d; want 20", got)
	}
	if got := replayAll(t, l, 20); len(got) != 0 {
		t.Fatalf("Replay(20) gave %d records; want 0", len(got))
	}
	var ce *CorruptionError
	if err := l.Replay(10, func(uint64, []byte) error { return nil }); !errors.As(err, &ce) || !strings.Contains(err.Error(), "records 11..20 are missing") {
		t.Fatalf("Replay(10) after removing records 1..20: %v; want a *CorruptionError saying they are missing", err)
	}
	if err := l.Replay(21, func(uint64, []byte) error { return nil }); !errors.As(err, &ce) {
		t.Fatalf("Replay beyond the end of the log: %v; want a *CorruptionError", err)
	}
	appendAll(t, l, recs[20:])
	if got := l.LastLSN(); got != 30 {
		t.Fatalf("LastLSN = %d; want 30", got)
	}
}

func TestReplaySkipsAndStops(t *testing.T) {
	recs := randomRecords(newRand(t), 50, 500)
	dir := buildLog(t, Options{SegmentBytes: 2 << 10}, recs)
	l := mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	stop := errors.New("stop")
	var seen int
	err := l.Replay(40, func(lsn uint64, rec []byte) error {
		if seen++; lsn == 45 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 5 {
		t.Fatalf("Replay stopped by fn: err %v after %d calls; want %v after 5", err, seen, stop)
	}
	if _, err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := l.Replay(0, func(uint64, []byte) error { return nil }); err == nil {
		t.Fatal("Replay after Append succeeded")
	}
}

func TestLifecycleErrors(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	lsn, err := l.Append([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, lsn+1); err == nil || !strings.Contains(err.Error(), "never appended") {
		t.Fatalf("Wait for an LSN never appended: %v", err)
	}
	if err := l.Wait(ctx, 0); err != nil {
		t.Fatalf("Wait(0): %v", err)
	}
	mustClose(t, l)
	mustClose(t, l) // idempotent
	if err := l.Wait(context.Background(), lsn); err != nil {
		t.Fatalf("Wait after Close for a record Close flushed: %v", err)
	}
	if l.Durable() != lsn {
		t.Fatalf("Durable() = %d after Close; want %d", l.Durable(), lsn)
	}
	if _, err := l.Append([]byte("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v; want ErrClosed", err)
	}
	if _, err := l.Rotate(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rotate after Close: %v; want ErrClosed", err)
	}
	if _, err := Open(t.TempDir(), Options{Sync: SyncNone + 1}); err == nil {
		t.Fatal("Open with an unknown sync policy succeeded")
	}
}

func TestWaitHonoursContext(t *testing.T) {
	g := newGate()
	l := mustOpen(t, t.TempDir(), Options{openFile: (&faultyFS{syncFault: g.hook}).open})
	g.on.Store(true)
	lsn, err := l.Append([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, lsn); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context while the fsync is blocked: %v; want context.Canceled", err)
	}
	g.outcomes <- nil
	mustClose(t, l)
}

func TestAppendBlocksWhenQueueFull(t *testing.T) {
	g := newGate()
	l := mustOpen(t, t.TempDir(), Options{MaxPendingBytes: 100, openFile: (&faultyFS{writeFault: g.hook}).open})
	g.on.Store(true)
	rec := make([]byte, 40)                  // 56 bytes framed
	if _, err := l.Append(rec); err != nil { // taken by the writer, which blocks in the write
		t.Fatal(err)
	}
	appended := make(chan error, 3)
	go func() {
		for range 3 { // the first fits in the queue, the second does not until the writer takes it
			_, err := l.Append(rec)
			appended <- err
		}
	}()
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-appended:
		t.Fatalf("Append over MaxPendingBytes returned (%v) while the writer was blocked", err)
	default:
	}
	g.outcomes <- nil
	for range 2 {
		if err := <-appended; err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
}

func TestWaitWithoutFsync(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			g := newGate() // every fsync blocks until the test lets it through
			l := mustOpen(t, t.TempDir(), Options{Sync: policy, SyncInterval: time.Millisecond, openFile: (&faultyFS{syncFault: g.hook}).open})
			g.on.Store(true)
			lsn, err := l.Append([]byte("written, not fsynced"))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Wait(context.Background(), lsn); err != nil {
				t.Fatalf("Wait under %v with fsync blocked: %v", policy, err)
			}
			if got := l.Durable(); got != lsn {
				t.Fatalf("Durable() = %d; want %d", got, lsn)
			}
			go func() { g.outcomes <- nil }() // the interval fsync, or Close's
			mustClose(t, l)
		})
	}
}

func TestDiskFullAtSegmentRoll(t *testing.T) {
	g := newGate()
	dir := t.TempDir()
	l := mustOpen(t, dir, fastRetry(Options{SegmentBytes: 100, openFile: (&faultyFS{writeFault: g.hook}).open}))
	recs := [][]byte{make([]byte, 200), []byte("needs a new segment")}
	appendAll(t, l, recs[:1]) // fills the first segment
	g.on.Store(true)
	lsn, err := l.Append(recs[1])
	if err != nil {
		t.Fatal(err)
	}
	g.outcomes <- syscall.ENOSPC // the new segment's header
	g.outcomes <- syscall.ENOSPC // its retry
	if err := l.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Err() = %v; want ENOSPC", err)
	}
	g.outcomes <- nil
	if err := l.Wait(context.Background(), lsn); err != nil {
		t.Fatal(err)
	}
	mustClose(t, l)
	if n := len(segmentFiles(t, dir)); n != 2 {
		t.Fatalf("%d segment files; want 2", n)
	}
	l = mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	equalRecords(t, "after reopen", replayAll(t, l, 0), recs)
}

// TestReplayRecordsOutliveTheCall keeps every record Replay hands out and compares them all
// once it returns, across several segments: recovery hands records to other goroutines.
func TestReplayRecordsOutliveTheCall(t *testing.T) {
	recs := randomRecords(newRand(t), 60, 500)
	dir := buildLog(t, Options{SegmentBytes: 2 << 10}, recs)
	l := mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	var kept [][]byte
	if err := l.Replay(0, func(_ uint64, rec []byte) error { kept = append(kept, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(kept) != len(recs) {
		t.Fatalf("replayed %d records; want %d", len(kept), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(kept[i], recs[i]) {
			t.Fatalf("record %d changed after its Replay call returned", i+1)
		}
	}
}

// TestReplayReusingSettlesBetweenSegments replays a log of many segments, after a record in the
// middle of one, through one buffer: settle comes before every segment read but the first, the
// records handed out since the last settle are whole when it does, and every record comes out.
func TestReplayReusingSettlesBetweenSegments(t *testing.T) {
	recs := randomRecords(newRand(t), 60, 500)
	dir := buildLog(t, Options{SegmentBytes: 2 << 10}, recs)
	segs, err := listSeq(dir, ".wal")
	if err != nil || len(segs) < 4 {
		t.Fatalf("%d segments (%v); want several", len(segs), err)
	}
	after := segs[1].seq // the second segment's first record: from there on
	l := mustOpen(t, dir, Options{})
	defer mustClose(t, l)
	var got, unsettled [][]byte
	settles := 0
	err = l.ReplayReusing(after, func(_ uint64, rec []byte) error {
		got = append(got, bytes.Clone(rec))
		unsettled = append(unsettled, rec)
		return nil
	}, func() error {
		for i, rec := range unsettled {
			if want := got[len(got)-len(unsettled)+i]; !bytes.Equal(rec, want) {
				t.Fatalf("a record changed before settle")
			}
		}
		unsettled = nil
		settles++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	equalRecords(t, "replayed through one buffer", got, recs[after:])
	if want := len(segs) - 2; settles != want { // segments 2.. are read, each but the first after a settle
		t.Fatalf("settle called %d times; want %d", settles, want)
	}
}

// TestWaitReturnsOnlyWhenDurable checks that Wait returns once its record is durable and not
// before, with segments so small that the writer often takes only part of the queued records
// (whose waiters then wake early and wait again), and that a Wait given up on does not disturb
// the others.
func TestWaitReturnsOnlyWhenDurable(t *testing.T) {
	const goroutines, perGoroutine = 16, 50
	l := mustOpen(t, t.TempDir(), Options{SegmentBytes: 256})
	defer mustClose(t, l)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for k := range perGoroutine {
				lsn, err := l.Append(make([]byte, 8+(g*k)%64))
				if err != nil {
					errs <- err
					return
				}
				if k%10 == 0 { // give up at once on some: the record still becomes durable
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					if err := l.Wait(ctx, lsn); err != nil && !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("cancelled Wait(%d) = %v", lsn, err)
					}
				}
				if err := l.Wait(context.Background(), lsn); err != nil {
					errs <- err
					return
				}
				if d := l.Durable(); d < lsn {
					errs <- fmt.Errorf("Wait(%d) returned while the log is durable up to %d", lsn, d)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := l.Durable(), uint64(goroutines*perGoroutine); got != want {
		t.Errorf("durable up to %d; want %d", got, want)
	}
}

// TestHoldKeepsRecordsTogether checks that records appended under a Hold stay queued until it is
// released, and then reach the file in one write.
func TestHoldKeepsRecordsTogether(t *testing.T) {
	obs := &countingObserver{}
	l := mustOpen(t, t.TempDir(), Options{Observer: obs})
	defer mustClose(t, l)
	upTo := func() uint64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.takeUpToLocked()
	}
	for round := range 20 {
		release := l.Hold()
		writesBefore, recordsBefore := obs.writes.Load(), obs.records.Load()
		var last uint64
		for range 5 {
			lsn, err := l.Append([]byte("held"))
			if err != nil {
				t.Fatal(err)
			}
			last = lsn
		}
		if got, want := upTo(), last-5; got != want {
			t.Fatalf("round %d: under the Hold the writer may take up to LSN %d; want %d, the last before it", round, got, want)
		}
		release()
		release() // idempotent
		if got := upTo(); got != last {
			t.Fatalf("round %d: after the release the writer may take up to LSN %d; want %d", round, got, last)
		}
		if err := l.Wait(context.Background(), last); err != nil {
			t.Fatal(err)
		}
		if w, r := obs.writes.Load()-writesBefore, obs.records.Load()-recordsBefore; w != 1 || r != 5 {
			t.Fatalf("round %d: the 5 held records took %d writes (%d records); want 1", round, w, r)
		}
	}
}

// signallingObserver counts like countingObserver and signals each write on wrote.
type signallingObserver struct {
	countingObserver
	wrote chan struct{}
}

func (o *signallingObserver) Wrote(records, bytes int) {
	o.countingObserver.Wrote(records, bytes)
	o.wrote <- struct{}{}
}

// TestFsyncOnlyForWaiters: two round trips append under holds that interleave, so when the first
// releases its hold the writer can take only the records before the second's. It writes them,
// but an fsync of them would release no one (the first waits for a later record): it fsyncs
// once, when the second releases, and that one fsync makes both durable.
func TestFsyncOnlyForWaiters(t *testing.T) {
	obs := &signallingObserver{wrote: make(chan struct{}, 16)}
	l := mustOpen(t, t.TempDir(), Options{Observer: obs})
	defer mustClose(t, l)
	appendOne := func() uint64 {
		lsn, err := l.Append([]byte("record"))
		if err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	releaseA := l.Hold()
	appendOne() // A's first record
	releaseB := l.Hold()
	appendOne()          // B's record
	lastA := appendOne() // A's last record, after B's hold began
	releaseA()
	waited := make(chan error, 1)
	go func() { waited <- l.Wait(context.Background(), lastA) }()
	<-obs.wrote // the writer took and wrote A's first record, all B's hold lets it take
	select {
	case err := <-waited:
		t.Fatalf("Wait(%d) returned %v while B's hold keeps the record queued", lastA, err)
	default:
	}
	releaseB()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if got := obs.syncs.Load(); got != 1 {
		t.Fatalf("%d fsyncs made both round trips durable; want 1 (no fsync for the records before B's hold alone)", got)
	}
}
