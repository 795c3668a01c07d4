package wal

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var seedFlag = flag.Uint64("seed", 1, "seed of the random records the tests generate")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newRand returns the tests' deterministic random source and logs its seed, which shows on failure.
func newRand(t testing.TB) *rand.Rand {
	t.Helper()
	t.Logf("seed %d (rerun with -seed=%d)", *seedFlag, *seedFlag)
	return rand.New(rand.NewPCG(*seedFlag, 0x5741))
}

// randomRecords returns n records of random sizes in [0, maxSize] and random contents.
func randomRecords(r *rand.Rand, n, maxSize int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = make([]byte, r.IntN(maxSize+1))
		for j := range recs[i] {
			recs[i][j] = byte(r.Uint32())
		}
	}
	return recs
}

var quiet = slog.New(slog.DiscardHandler)

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

func mustClose(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// appendAll appends recs in order, checks their LSNs follow the log's last one, and waits for the
// last to be durable.
func appendAll(t testing.TB, l *Log, recs [][]byte) {
	t.Helper()
	var lsn uint64
	for i, rec := range recs {
		want := l.LastLSN() + 1
		var err error
		if lsn, err = l.Append(rec); err != nil {
			t.Fatalf("Append #%d: %v", i, err)
		}
		if lsn != want {
			t.Fatalf("Append #%d got LSN %d; want %d", i, lsn, want)
		}
	}
	if err := l.Wait(context.Background(), lsn); err != nil {
		t.Fatalf("Wait(%d): %v", lsn, err)
	}
}

// replayAll returns the records Replay(after) yields, checking their LSNs are after+1, after+2, ...
func replayAll(t testing.TB, l *Log, after uint64) [][]byte {
	t.Helper()
	var got [][]byte
	err := l.Replay(after, func(lsn uint64, rec []byte) error {
		if want := after + uint64(len(got)) + 1; lsn != want {
			return fmt.Errorf("replayed LSN %d; want %d", lsn, want)
		}
		got = append(got, bytes.Clone(rec))
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", after, err)
	}
	return got
}

func equalRecords(t testing.TB, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records; want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: record #%d differs: %d bytes %.16x...; want %d bytes %.16x...", what, i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

// segmentFiles returns the paths of the segment files in dir, oldest first.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := listSeq(dir, ".wal")
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, len(segs))
	for i, s := range segs {
		paths[i] = s.path
	}
	return paths
}

// buildLog creates a log in a new directory holding recs, closed.
func buildLog(t testing.TB, opts Options, recs [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	l := mustOpen(t, dir, opts)
	appendAll(t, l, recs)
	mustClose(t, l)
	return dir
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// frameSize is the size of rec framed.
func frameSize(rec []byte) int64 { return frameHeaderSize + int64(len(rec)) }

// countingObserver counts the writer's writes and fsyncs.
type countingObserver struct {
	writes, records, bytes, syncs atomic.Int64
}

func (o *countingObserver) Wrote(records, bytes int) {
	o.writes.Add(1)
	o.records.Add(int64(records))
	o.bytes.Add(int64(bytes))
}

func (o *countingObserver) Synced(time.Duration) { o.syncs.Add(1) }

// faultyFS opens segment files whose operations consult hooks first: a hook returning an error
// makes the operation fail with it, wrapped in an *fs.PathError naming the file as the os package
// does (a failing WriteAt still writes half of its bytes, as a write cut short by a full disk
// does). Hooks are set before Open and must be safe for concurrent use.
type faultyFS struct {
	writeFault, syncFault, truncateFault func() error
}

func (fs *faultyFS) open(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: f, fs: fs}, nil
}

type faultyFile struct {
	*os.File
	fs *faultyFS
}

func (f *faultyFile) fault(op string, hook func() error) error {
	if hook == nil {
		return nil
	}
	if err := hook(); err != nil {
		return &fs.PathError{Op: op, Path: f.Name(), Err: err}
	}
	return nil
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fault("write", f.fs.writeFault); err != nil {
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Sync() error {
	if err := f.fault("sync", f.fs.syncFault); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	if err := f.fault("truncate", f.fs.truncateFault); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

// gate is a fault hook the test drives step by step: while on, each call blocks until the test
// sends the outcome of that call; receiving nil turns the gate off, so later calls pass straight.
type gate struct {
	on       atomic.Bool
	outcomes chan error
}

func newGate() *gate { return &gate{outcomes: make(chan error)} }

func (g *gate) hook() error {
	if !g.on.Load() {
		return nil
	}
	err := <-g.outcomes
	if err == nil {
		g.on.Store(false)
	}
	return err
}
