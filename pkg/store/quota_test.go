package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/wal"
)

// costOf is what a key of this name and value counts against the quota.
func costOf(key, value string) int64 { return int64(len(key)+len(value)) + KeyOverhead }

// residentBytes adds up the cost of every resident key, to check the store's running count.
func residentBytes(s *Memory) int64 {
	var n int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		sh.each(func(rk residentKey) { n += rk.header.cost() })
		sh.mu.RUnlock()
	}
	return n
}

// applyErr applies writes and returns the error, with the results.
func applyErr(s Engine, mode Mode, writes ...Write) ([]Result, error) {
	res := make([]Result, len(writes))
	_, err := s.Apply(context.Background(), Batch{Mode: mode, Writes: writes}, res)
	return res, err
}

// wantQuotaError fails unless err is the quota's refusal.
func wantQuotaError(t *testing.T, err error) *QuotaError {
	t.Helper()
	q, ok := errors.AsType[*QuotaError](err)
	if !ok || !errors.Is(err, ErrQuota) {
		t.Fatalf("err = %v; want a *QuotaError", err)
	}
	return q
}

func TestQuotaRefusesWritesThatWouldCrossIt(t *testing.T) {
	value := strings.Repeat("v", 100)
	max := 10 * costOf("k0", value)
	s := newTestMemory(t, Options{Shards: 4, MaxBytes: max})
	for i := range 10 { // exactly up to the quota: every write passes
		apply(t, s, Atomic, put(fmt.Sprint("k", i), value))
	}
	if st := s.Stats(); st.Bytes != max || st.MaxBytes != max || st.QuotaRefusals != 0 {
		t.Fatalf("stats at the quota = %+v; want %d bytes of %d, no refusal", st, max, max)
	}
	rev := s.Stats().Revision
	for _, mode := range []Mode{Atomic, BestEffort} {
		_, err := applyErr(s, mode, put("new", value), put("k0", "")) // frees 100, adds 167
		q := wantQuotaError(t, err)
		if q.Used != max || q.Max != max || q.Grow != costOf("new", value)-100 {
			t.Fatalf("%v refusal = %+v", mode, q)
		}
	}
	if st := s.Stats(); st.Revision != rev || st.QuotaRefusals != 2 || st.Bytes != max {
		t.Fatalf("after refusals: %+v; want nothing applied, 2 refusals", st)
	}
	if it := get(s, "new"); it.Found {
		t.Fatal("a refused write was applied")
	}
	if it := get(s, "k0"); string(it.Value) != value {
		t.Fatal("a refused batch changed a key")
	}
	// Writes that do not grow the store pass at the quota: an overwrite of the same size, a
	// shrinking one, a delete. What they free makes room again.
	apply(t, s, Atomic, put("k1", strings.Repeat("w", 100)))
	apply(t, s, Atomic, put("k2", "short"))
	apply(t, s, Atomic, Write{Key: "k3", Delete: true, ExpectedVersion: AnyVersion})
	if got, want := s.Stats().Bytes, max-95-costOf("k3", value); got != want {
		t.Fatalf("bytes = %d; want %d", got, want)
	}
	apply(t, s, Atomic, put("k3", value))
	if _, err := applyErr(s, Atomic, put("new", value)); err == nil { // 167 bytes, 95 free
		t.Fatal("a write over the quota passed")
	}
	if got := residentBytes(s); got != s.Stats().Bytes {
		t.Fatalf("resident keys cost %d; the store counts %d", got, s.Stats().Bytes)
	}
}

func TestQuotaFreedByExpiry(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	max := 2 * costOf("a", "1234")
	s := newTestMemory(t, Options{Shards: 2, MaxBytes: max, Now: clock.Now})
	ttl := put("a", "1234")
	ttl.ExpiresAtMs = clock.Now().Add(time.Second).UnixMilli()
	apply(t, s, Atomic, ttl, put("b", "1234"))
	_, err := applyErr(s, Atomic, put("c", "1234"))
	wantQuotaError(t, err)
	clock.Advance(time.Second)
	if n := s.Sweep(); n != 1 {
		t.Fatalf("swept %d keys; want 1", n)
	}
	if got := s.Stats().Bytes; got != costOf("b", "1234") {
		t.Fatalf("bytes after the sweep = %d; want %d", got, costOf("b", "1234"))
	}
	apply(t, s, Atomic, put("c", "1234"))
	// An expired key not yet swept still takes its room until it is overwritten.
	ttl.Key, ttl.ExpiresAtMs = "c", clock.Now().Add(time.Second).UnixMilli()
	apply(t, s, Atomic, ttl)
	clock.Advance(time.Second)
	apply(t, s, Atomic, put("c", "5678"))
	if got := residentBytes(s); got != s.Stats().Bytes || got != max {
		t.Fatalf("resident keys cost %d, the store counts %d; want %d", got, s.Stats().Bytes, max)
	}
}

// TestQuotaHoldsUnderConcurrentWriters: writers racing for the last bytes never take the store
// over its quota together, and the count matches the resident keys. Seeded; the seed is printed.
func TestQuotaHoldsUnderConcurrentWriters(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const max = 64 << 10
	s := newTestMemory(t, Options{Shards: 8, MaxBytes: max})
	var wg sync.WaitGroup
	for g := range 4 {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() {
			for i := range 500 {
				w := put(fmt.Sprintf("g%d/%d", g, rng.IntN(200)), strings.Repeat("v", rng.IntN(300)))
				if rng.IntN(4) == 0 {
					w = Write{Key: w.Key, Delete: true, ExpectedVersion: AnyVersion}
				}
				if _, err := applyErr(s, BestEffort, w); err != nil && !errors.Is(err, ErrQuota) {
					t.Errorf("seed %d, writer %d, write %d: %v", seed, g, i, err)
					return
				}
				if used := s.Stats().Bytes; used > max {
					t.Errorf("seed %d: %d bytes in use, over the quota of %d", seed, used, max)
					return
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if got := residentBytes(s); got != st.Bytes {
		t.Fatalf("seed %d: resident keys cost %d; the store counts %d", seed, got, st.Bytes)
	}
	if st.QuotaRefusals == 0 {
		t.Fatalf("seed %d: no write was refused; the test did not reach the quota", seed)
	}
}

func TestQuotaAcrossRecovery(t *testing.T) {
	dir := t.TempDir()
	open := func(max int64) *Durable {
		t.Helper()
		d, err := OpenDurable(DurableOptions{Options: Options{Shards: 4, MaxBytes: max}, Dir: dir,
			WAL: wal.Options{Sync: wal.SyncNone, SegmentBytes: 4 << 10}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	value := strings.Repeat("v", 200)
	d := open(0)
	for i := range 20 {
		apply(t, d, Atomic, put(fmt.Sprint("k", i), value))
	}
	if err := d.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 30; i++ { // in the log after the snapshot
		apply(t, d, Atomic, put(fmt.Sprint("k", i), value))
	}
	apply(t, d, Atomic, Write{Key: "k0", Delete: true, ExpectedVersion: AnyVersion}, put("k1", "short"))
	want := d.Stats().Bytes
	if want != residentBytes(d.mem) {
		t.Fatalf("before restart the store counts %d, its keys cost %d", want, residentBytes(d.mem))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Recovered with a quota below what it holds: it opens, with every key, and refuses to grow.
	d = open(want / 2)
	defer d.Close()
	if got := d.Stats().Bytes; got != want || residentBytes(d.mem) != want {
		t.Fatalf("recovered %d bytes (keys cost %d); want %d", got, residentBytes(d.mem), want)
	}
	_, err := applyErr(d, Atomic, put("more", "x"))
	wantQuotaError(t, err)
	if it := get(d, "k29"); string(it.Value) != value {
		t.Fatal("a recovered key reads wrong")
	}
	apply(t, d, Atomic, Write{Key: "k2", Delete: true, ExpectedVersion: AnyVersion})
	if got := d.Stats().Bytes; got != want-costOf("k2", value) {
		t.Fatalf("after a delete over the quota: %d bytes; want %d", got, want-costOf("k2", value))
	}
}

func TestQuotaGivenBackWhenTheJournalRefuses(t *testing.T) {
	s, err := OpenDurable(DurableOptions{Options: Options{Shards: 4, MaxBytes: 1 << 20}, Dir: t.TempDir(),
		WAL: wal.Options{Sync: wal.SyncNone}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	apply(t, s, Atomic, put("a", "1"))
	s.journal = failingJournal{errors.New("no space left on device")}
	if _, err := applyErr(s, Atomic, put("b", "1")); !errors.Is(err, ErrJournal) {
		t.Fatalf("err = %v; want ErrJournal", err)
	}
	if got := s.Stats().Bytes; got != costOf("a", "1") {
		t.Fatalf("bytes = %d after a write the journal refused; want %d", got, costOf("a", "1"))
	}
}

func TestNewMemoryRejectsNegativeQuota(t *testing.T) {
	if _, err := NewMemory(Options{MaxBytes: -1}); err == nil {
		t.Fatal("NewMemory(MaxBytes: -1) succeeded")
	}
}
