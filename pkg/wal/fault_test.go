package wal

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/syncbuf"
)

// fastRetry makes the writer retry at once after a failure: the tests pace it with gates.
func fastRetry(o Options) Options {
	o.minBackoff, o.maxBackoff = time.Microsecond, time.Microsecond
	return o
}

func TestDiskFullThenRoom(t *testing.T) {
	for _, tc := range []struct {
		name        string
		truncateErr error // what Truncate returns while the disk is full
	}{
		{"truncate works", nil},
		{"truncate fails too, retry overwrites", syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := randomRecords(newRand(t), 8, 500)
			g := newGate()
			ffs := &faultyFS{writeFault: g.hook, truncateFault: func() error { return tc.truncateErr }}
			logs := &syncbuf.Buffer{}
			dir := t.TempDir()
			l := mustOpen(t, dir, fastRetry(Options{openFile: ffs.open, Logger: slog.New(slog.NewTextHandler(logs, nil))}))
			appendAll(t, l, recs[:3])

			g.on.Store(true) // the disk is full: every write now waits for its outcome from the test
			var lsns []uint64
			for _, rec := range recs[3:6] { // accepted: the first write has not failed yet
				lsn, err := l.Append(rec)
				if err != nil {
					t.Fatalf("Append before the failure: %v", err)
				}
				lsns = append(lsns, lsn)
			}
			g.outcomes <- syscall.ENOSPC // the first write fails, half written
			g.outcomes <- syscall.ENOSPC // the writer is retrying, so it has marked the log failed
			if err := l.Err(); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Err() while the disk is full = %v; want ErrFailed wrapping ENOSPC", err)
			}
			if _, err := l.Append(recs[6]); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append while the disk is full: %v; want ErrFailed wrapping ENOSPC", err)
			}
			// What callers get may travel to clients: it says what failed, not where.
			for _, err := range []error{l.Err(), func() error { _, err := l.Append(recs[6]); return err }()} {
				if msg := err.Error(); strings.Contains(msg, dir) || !strings.Contains(msg, "cannot write a log file: no space left") {
					t.Fatalf("error for callers %q names a path, or not what failed", msg)
				}
			}
			waited := make(chan error, 1)
			go func() { waited <- l.Wait(context.Background(), lsns[2]) }()
			g.outcomes <- syscall.ENOSPC // a third attempt fails
			select {
			case err := <-waited:
				t.Fatalf("Wait for a record not yet written returned %v", err)
			default:
			}
			if got := l.Durable(); got != 3 {
				t.Fatalf("Durable() while failing = %d; want 3", got)
			}

			g.outcomes <- nil // room again: this attempt and every later write succeed
			if err := <-waited; err != nil {
				t.Fatalf("Wait after the disk has room: %v", err)
			}
			if err := l.Err(); err != nil {
				t.Fatalf("Err() after recovery = %v; want nil", err)
			}
			appendAll(t, l, recs[6:])
			mustClose(t, l)
			for _, want := range []string{"I/O failed", "no space left", "works again", segmentFiles(t, dir)[0]} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log does not mention %q:\n%s", want, logs)
				}
			}

			rep, err := Check(dir)
			if err != nil || rep.TornTail != nil || rep.Corruption != nil || rep.Records != uint64(len(recs)) {
				t.Fatalf("Check after recovery = %+v, %v; want %d records and no damage", rep, err, len(recs))
			}
			l = mustOpen(t, dir, Options{})
			defer mustClose(t, l)
			equalRecords(t, "after reopen", replayAll(t, l, 0), recs)
		})
	}
}

func TestFsyncFailureRewrites(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			recs := randomRecords(newRand(t), 4, 300)
			g := newGate()
			obs := &countingObserver{}
			dir := t.TempDir()
			l := mustOpen(t, dir, fastRetry(Options{Sync: policy, SyncInterval: time.Millisecond, Observer: obs, openFile: (&faultyFS{syncFault: g.hook}).open}))
			g.on.Store(true)
			for _, rec := range recs {
				if _, err := l.Append(rec); err != nil {
					t.Fatal(err)
				}
			}
			waited := make(chan error, 1) // under SyncAlways the Wait has the writer fsync
			go func() { waited <- l.Wait(context.Background(), uint64(len(recs))) }()
			g.outcomes <- syscall.EIO // the first fsync fails
			g.outcomes <- syscall.EIO // so does the one of the first retry
			if err := l.Err(); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("Err() after a failed fsync = %v; want ErrFailed wrapping EIO", err)
			}
			g.outcomes <- nil
			if err := <-waited; err != nil {
				t.Fatal(err)
			}
			mustClose(t, l)
			if obs.syncs.Load() == 0 {
				t.Fatal("no successful fsync observed")
			}
			if got := obs.records.Load(); got <= int64(len(recs)) {
				t.Fatalf("Observer saw %d records written; want them written again after each failed fsync", got)
			}
			rep, err := Check(dir)
			if err != nil || rep.TornTail != nil || rep.Corruption != nil || rep.Records != uint64(len(recs)) {
				t.Fatalf("Check = %+v, %v; want exactly %d records: a rewrite must not duplicate them", rep, err, len(recs))
			}
		})
	}
}

func TestCloseWhileFailing(t *testing.T) {
	g := newGate()
	dir := t.TempDir()
	l := mustOpen(t, dir, fastRetry(Options{openFile: (&faultyFS{writeFault: g.hook}).open}))
	appendAll(t, l, [][]byte{[]byte("kept")})
	g.on.Store(true)
	lsn, err := l.Append([]byte("lost"))
	if err != nil {
		t.Fatal(err)
	}
	g.outcomes <- syscall.ENOSPC
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	for done := false; !done; { // fail every attempt, retries and Close's last one, until Close gives up
		select {
		case g.outcomes <- syscall.ENOSPC:
		case err := <-closed:
			if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Close while the disk is full: %v; want ErrFailed wrapping ENOSPC", err)
			}
			done = true
		}
	}
	if err := l.Wait(context.Background(), lsn); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait for a record Close could not write: %v; want ErrClosed", err)
	}
	if rep, err := Check(dir); err != nil || rep.TornTail != nil || rep.Records != 1 {
		t.Fatalf("Check = %+v, %v; want the 1 record written before the failure and no partial one", rep, err)
	}
}

func TestRotateWhileFailing(t *testing.T) {
	g := newGate()
	l := mustOpen(t, t.TempDir(), fastRetry(Options{openFile: (&faultyFS{writeFault: g.hook}).open}))
	g.on.Store(true)
	if _, err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	g.outcomes <- syscall.ENOSPC
	g.outcomes <- syscall.ENOSPC // failing now
	rotated := make(chan error)
	go func() { _, err := l.Rotate(); rotated <- err }()
	for done := false; !done; { // Rotate is answered between retries
		select {
		case g.outcomes <- syscall.ENOSPC:
		case err := <-rotated:
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("Rotate while failing: %v; want ErrFailed", err)
			}
			done = true
		}
	}
	g.outcomes <- nil
	mustClose(t, l)
}

// After a failed fsync the writer writes its unsynced records again; if that rewrite fails too, the
// records written before must stay in the file (a killed process must not lose them under
// SyncInterval, where Wait already returned for them).
func TestFailedRewriteKeepsWrittenRecords(t *testing.T) {
	syncs, writes := newGate(), newGate()
	dir := t.TempDir()
	l := mustOpen(t, dir, fastRetry(Options{Sync: SyncInterval, SyncInterval: time.Millisecond,
		openFile: (&faultyFS{writeFault: writes.hook, syncFault: syncs.hook}).open}))
	syncs.on.Store(true)
	appendAll(t, l, randomRecords(newRand(t), 3, 200)) // written, not fsynced
	writes.on.Store(true)
	syncs.outcomes <- syscall.EIO     // the interval fsync fails
	writes.outcomes <- syscall.ENOSPC // and so does the rewrite
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	for done := false; !done; {
		select {
		case writes.outcomes <- syscall.ENOSPC:
		case err := <-closed:
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("Close: %v; want ErrFailed", err)
			}
			done = true
		}
	}
	if rep, err := Check(dir); err != nil || rep.TornTail != nil || rep.Corruption != nil || rep.Records != 3 {
		t.Fatalf("Check = %+v, %v; want the 3 written records, intact", rep, err)
	}
}
