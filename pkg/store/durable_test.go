package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/wal"
)

type recovered struct {
	tag     string
	rev     int64
	results []Result
}

func openDurable(t testing.TB, dir string, got *[]recovered, tags func() [][]byte) *Durable {
	t.Helper()
	d, err := OpenDurable(DurableOptions{
		Options: Options{Shards: 8},
		Dir:     dir,
		WAL:     wal.Options{Sync: wal.SyncNone, SegmentBytes: 4 << 10},
		Recovered: func(tag []byte, rev int64, _ []string, results []Result) {
			if got != nil {
				*got = append(*got, recovered{string(tag), rev, results})
			}
		},
		SnapshotTags: tags,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dump reads every key of the store as key -> "value@version".
func dump(t testing.TB, e *Durable) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := range e.mem.shards {
		sh := &e.mem.shards[i]
		sh.mu.RLock()
		sh.each(func(rk residentKey) {
			out[string(rk.key)] = fmt.Sprintf("%s@%d/%d", rk.value, rk.header.version, rk.header.expiresAtMs)
		})
		sh.mu.RUnlock()
	}
	return out
}

func applyTagged(t testing.TB, e Engine, mode Mode, tag string, writes ...Write) []Result {
	t.Helper()
	res := make([]Result, len(writes))
	if _, err := e.Apply(context.Background(), Batch{Mode: mode, Writes: writes, Tag: []byte(tag)}, res); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDurableRecoversEverything(t *testing.T) {
	dir := t.TempDir()
	d := openDurable(t, dir, nil, nil)
	applyTagged(t, d, Atomic, "", put("a", "1"), put("b", "1"), put("c", "1"))
	ttl := put("t", "x")
	ttl.ExpiresAtMs = time.Now().Add(time.Hour).UnixMilli()
	be := applyTagged(t, d, BestEffort, "req-1",
		Write{Key: "a", Value: []byte("2"), ExpectedVersion: 1},
		Write{Key: "b", Value: []byte("2"), ExpectedVersion: 0}, // fails: exists
		Write{Key: "c", Delete: true, ExpectedVersion: AnyVersion},
		ttl)
	// A failed atomic batch is not logged.
	_, err := d.Apply(context.Background(), Batch{Mode: Atomic, Writes: []Write{{Key: "a", Value: []byte("x"), ExpectedVersion: 9}}}, make([]Result, 1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 { // several segments
		applyTagged(t, d, Atomic, "", put(fmt.Sprint("k", i), strings.Repeat("v", 50)))
	}
	wantStats := d.Stats()
	d, got := reopen(t, d, dir)
	defer d.Close()
	if len(got) != 1 || got[0].tag != "req-1" || got[0].rev != 2 || !slices.Equal(got[0].results, be) {
		t.Fatalf("recovered tags = %+v; want req-1 at revision 2 with %+v", got, be)
	}
	// Writing continues at the next revision.
	res := applyTagged(t, d, Atomic, "", put("after", "1"))
	if res[0].Version != wantStats.Revision+1 {
		t.Fatalf("first write after recovery at %d; want %d", res[0].Version, wantStats.Revision+1)
	}
}

// reopen closes d, opens dir again (recording recovered tags) and fails the test unless the
// recovered store holds exactly what d held, at the same revision. The caller closes the
// returned engine.
func reopen(t *testing.T, d *Durable, dir string) (*Durable, []recovered) {
	t.Helper()
	want, wantStats := dump(t, d), d.Stats()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var got []recovered
	d = openDurable(t, dir, &got, nil)
	if state := dump(t, d); !maps.Equal(state, want) || d.Stats() != wantStats {
		t.Fatalf("recovered state differs:\n got %v %+v\nwant %v %+v", state, d.Stats(), want, wantStats)
	}
	return d, got
}

func TestSnapshotBoundsTheLog(t *testing.T) {
	dir := t.TempDir()
	d := openDurable(t, dir, nil, func() [][]byte { return [][]byte{[]byte("kept-tag")} })
	write := func(round int) {
		for i := range 300 {
			applyTagged(t, d, Atomic, "", put(fmt.Sprint("k", i%50), fmt.Sprint(strings.Repeat("v", 40), round, i)))
		}
	}
	snapshot := func() {
		t.Helper()
		if err := d.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	segments := countFiles(t, dir, ".wal")
	snapshot() // the first: recovery's fallback is the empty state and the whole log, so nothing goes
	if after, snaps := countFiles(t, dir, ".wal"), countFiles(t, dir, ".snap"); after < segments || snaps != 1 {
		t.Fatalf("after the first snapshot: %d segments (before %d), %d snapshots; want none removed and 1 snapshot", after, segments, snaps)
	}
	for round := 1; round <= 3; round++ {
		write(round)
		segments = countFiles(t, dir, ".wal")
		snapshot() // the log before the previous snapshot goes, with older snapshots
		if after, snaps := countFiles(t, dir, ".wal"), countFiles(t, dir, ".snap"); after >= segments || snaps != 2 {
			t.Fatalf("after snapshot %d: %d segments (before %d), %d snapshots; want fewer segments and 2 snapshots", round+1, after, segments, snaps)
		}
	}
	applyTagged(t, d, BestEffort, "late", put("k1", "late"), Write{Key: "k2", Delete: true, ExpectedVersion: AnyVersion})
	d, got := reopen(t, d, dir)
	defer d.Close()
	if len(got) != 2 || got[0].tag != "kept-tag" || got[0].rev != 0 || got[1].tag != "late" {
		t.Fatalf("recovered tags = %+v; want the snapshot's, then the log's", got)
	}
}

// TestCorruptSnapshotFallsBack flips one byte in the middle of the newest snapshot: recovery
// falls back to the previous snapshot and the log kept after it, and loses nothing; Check
// reports the snapshot.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	dir := t.TempDir()
	d := openDurable(t, dir, nil, nil)
	for round := range 3 {
		for i := range 200 {
			applyTagged(t, d, Atomic, "", put(fmt.Sprint("k", i), fmt.Sprint(strings.Repeat("v", 40), round)))
		}
		if err := d.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	applyTagged(t, d, Atomic, "", put("after-the-last-snapshot", "1"))
	want, wantStats := dump(t, d), d.Stats()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "*.snap"))
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots; want the newest and the previous one", len(snaps))
	}
	newest := snaps[len(snaps)-1]
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(newest, b, 0o600); err != nil {
		t.Fatal(err)
	}

	rep, err := wal.Check(dir)
	if err != nil || len(rep.BadSnapshots) != 1 || rep.BadSnapshots[0].File != newest || rep.Sound() || rep.Gap != "" || rep.Corruption != nil {
		t.Fatalf("Check = %+v, %v; want the newest snapshot reported invalid, and no gap", rep, err)
	}
	d = openDurable(t, dir, nil, nil)
	defer d.Close()
	if got := dump(t, d); !maps.Equal(got, want) || d.Stats() != wantStats {
		t.Fatalf("recovered from the previous snapshot:\n got %d keys %+v\nwant %d keys %+v", len(got), d.Stats(), len(want), wantStats)
	}
}

func countFiles(t testing.TB, dir, suffix string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

// TestSnapshotDuringAtomicWrites takes snapshots while writers put one value into every key
// of a set in atomic batches; the recovered store must hold one batch whole.
func TestSnapshotDuringAtomicWrites(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	d := openDurable(t, dir, nil, nil)
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprint("set-", i)
	}
	batch := func(v string) []Write {
		w := make([]Write, len(keys))
		for i, k := range keys {
			w[i] = put(k, v)
		}
		return w
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := range 150 {
				applyTagged(t, d, Atomic, "", batch(fmt.Sprintf("w%d-%d-%d", g, i, rng.IntN(100)))...)
			}
		}()
	}
	for range 5 {
		if err := d.Snapshot(context.Background()); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	d, _ = reopen(t, d, dir)
	defer d.Close()
	got := dump(t, d)
	first := got[keys[0]]
	for _, k := range keys {
		if got[k] != first {
			t.Fatalf("seed %d: half a batch recovered: %s=%s, %s=%s", seed, keys[0], first, k, got[k])
		}
	}
}

// failingJournal refuses every record, as a full disk makes the log do.
type failingJournal struct{ err error }

func (j failingJournal) Append([]byte) (uint64, error)      { return 0, j.err }
func (j failingJournal) Wait(context.Context, uint64) error { return j.err }
func (j failingJournal) Err() error                         { return j.err }
func (j failingJournal) Hold() func()                       { return func() {} }

func TestJournalFailureRefusesWritesKeepsReads(t *testing.T) {
	s := openDurable(t, t.TempDir(), nil, nil)
	defer s.Close()
	apply(t, s, Atomic, put("a", "1"))
	s.journal = failingJournal{errors.New("no space left on device")}
	_, err := s.Apply(context.Background(), Batch{Mode: Atomic, Writes: []Write{put("b", "1")}}, make([]Result, 1))
	if !errors.Is(err, ErrJournal) || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("err = %v; want ErrJournal naming the cause", err)
	}
	if it := get(s, "a"); !it.Found {
		t.Fatal("read failed while the journal is down")
	}
	if it := get(s, "b"); it.Found || s.Stats().Revision != 1 {
		t.Fatal("a refused write was applied")
	}
}

// unconfirmedJournal appends to the log but never confirms a record durable: Wait fails with err,
// as it does when the caller's deadline passes first.
type unconfirmedJournal struct {
	journal
	err error
}

func (j unconfirmedJournal) Wait(context.Context, uint64) error { return j.err }

// TestDurableErrorsKeepTheirCause checks that ErrJournal and ErrNotDurable wrap the log's error
// rather than flatten it to text: a caller can match both the store's error and the cause.
func TestDurableErrorsKeepTheirCause(t *testing.T) {
	d := openDurable(t, t.TempDir(), nil, nil)
	apply(t, d, Atomic, put("a", "1"))
	d.journal = unconfirmedJournal{journal: d.log, err: fmt.Errorf("wal: wait: %w", context.DeadlineExceeded)}
	_, err := applyErr(d, Atomic, put("b", "1"))
	if !errors.Is(err, ErrNotDurable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Apply: err = %v; want ErrNotDurable wrapping context.DeadlineExceeded", err)
	}
	_, err = d.GetAll(context.Background(), []string{"a"}, make([]Item, 1))
	if !errors.Is(err, ErrNotDurable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetAll: err = %v; want ErrNotDurable wrapping context.DeadlineExceeded", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = applyErr(d, Atomic, put("c", "1")) // the log is closed: it refuses the record
	if !errors.Is(err, ErrJournal) || !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Apply after Close: err = %v; want ErrJournal wrapping wal.ErrClosed", err)
	}
}

func TestOpenDurableStopsOnCorruption(t *testing.T) {
	dir := t.TempDir()
	d := openDurable(t, dir, nil, nil)
	for i := range 20 {
		applyTagged(t, d, Atomic, "", put(fmt.Sprint("k", i), "value"))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenDurable(DurableOptions{Dir: dir})
	var ce *wal.CorruptionError
	if !errors.As(err, &ce) || ce.File == "" {
		t.Fatalf("err = %v; want a *wal.CorruptionError naming the file", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, Batch{Mode: Atomic, Writes: []Write{put("k", "v")}}, []Result{{Code: OK}}))
	f.Add(appendRecord(nil, Batch{Tag: []byte("t"), Writes: []Write{{Key: "d", Delete: true}, put("x", "y")}},
		[]Result{{Code: OK}, {Code: AlreadyExists, Version: 3}}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var r record
		if err := decodeRecord(rec, &r); err != nil {
			return
		}
		if len(r.writes) != len(r.results) {
			t.Fatalf("%d writes, %d results", len(r.writes), len(r.results))
		}
		// A record that decodes re-encodes to one that decodes the same.
		again := appendRecord(nil, Batch{Writes: r.writes, Tag: r.tag}, r.results)
		setRecordRevision(again, r.rev)
		var r2 record
		if err := decodeRecord(again, &r2); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if r2.rev != r.rev || string(r2.tag) != string(r.tag) || !slices.Equal(r2.results, r.results) ||
			!slices.EqualFunc(r2.writes, r.writes, func(a, b Write) bool {
				return a.Key == b.Key && string(a.Value) == string(b.Value) && a.Delete == b.Delete && a.ExpiresAtMs == b.ExpiresAtMs
			}) {
			t.Fatalf("re-encoding changed the record:\n%+v\n%+v", r, r2)
		}
	})
}

// snapshotCounter counts the snapshots a Durable reports.
type snapshotCounter struct{ n atomic.Int64 }

func (c *snapshotCounter) Recovered(time.Duration, uint64, int64) {}
func (c *snapshotCounter) Snapshotted(_ time.Duration, _ int64, err error) {
	if err == nil {
		c.n.Add(1)
	}
}

// TestSnapshotLimitFollowsSnapshotSize checks that once a snapshot is smaller than
// SnapshotBytes, the next starts after about its size of log (never under SnapshotBytes/16),
// and that a reopened store takes the size of the snapshot it loaded.
func TestSnapshotLimitFollowsSnapshotSize(t *testing.T) {
	const limit = 1 << 20
	dir := t.TempDir()
	var snaps snapshotCounter
	open := func() *Durable {
		d, err := OpenDurable(DurableOptions{Options: Options{Shards: 4}, Dir: dir,
			WAL: wal.Options{Sync: wal.SyncNone}, SnapshotBytes: limit, Observer: &snaps})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := open()
	ctx := context.Background()
	value := make([]byte, 1000)
	write := func(n int) { // n keys of 1000 bytes, rewritten each time
		for i := range n {
			if _, err := d.Apply(ctx, Batch{Mode: Atomic, Writes: []Write{{Key: fmt.Sprintf("k%04d", i), Value: value, ExpectedVersion: AnyVersion}}}, make([]Result, 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(200) // about 200 KB logged: under SnapshotBytes, no snapshot
	d.snapshotting.Wait()
	if got := d.snapshotLimit(); got != limit || snaps.n.Load() != 0 {
		t.Fatalf("before any snapshot: limit %d, %d snapshots", got, snaps.n.Load())
	}
	if err := d.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	size := d.snapBytes.Load()
	if got := d.snapshotLimit(); size < 200_000 || size > limit/2 || got != size {
		t.Fatalf("after a snapshot of %d bytes: limit %d", size, got)
	}
	write(300) // more log than the snapshot holds: a snapshot starts in the background
	d.snapshotting.Wait()
	if snaps.n.Load() != 2 {
		t.Fatalf("%d snapshots after logging more than the last one's %d bytes, want 2", snaps.n.Load(), size)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = open()
	defer d.Close()
	if got := d.snapshotLimit(); got < 200_000 || got > limit/2 {
		t.Errorf("reopened: limit %d, want the loaded snapshot's size", got)
	}
	d.snapBytes.Store(10) // a tiny store: SnapshotBytes/16 at least
	if got := d.snapshotLimit(); got != limit/16 {
		t.Errorf("after a 10-byte snapshot: limit %d, want %d", got, limit/16)
	}
}
