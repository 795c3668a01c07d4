package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/putallkv/putallkv/internal/pairwriter"
)

// TestScanUnderWrites scans while writes go on, between pages (drawn from a seeded generator,
// so a failure replays with -seed) and from a goroutine at the same time: every key present for
// the whole scan, overwritten or not, is returned exactly once, and no key is returned twice.
func TestScanUnderWrites(t *testing.T) {
	seed := metamorphicTestSeed(t)
	for _, kind := range []engineKind{memoryKind, durableKind} {
		for _, shards := range []int{1, 4, 256} {
			t.Run(fmt.Sprintf("%s/shards=%d", kind.name, shards), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, uint64(shards)))
				sub := openSubject(t, kind, Options{Shards: shards})
				e := sub.engine()
				const stable, churn = 500, 200
				put := func(keys ...string) {
					writes := make([]Write, len(keys))
					for i, k := range keys {
						writes[i] = Write{Key: k, Value: []byte(fmt.Sprint(rng.Int())), ExpectedVersion: AnyVersion}
					}
					if _, err := e.Apply(context.Background(), Batch{Mode: BestEffort, Writes: writes}, make([]Result, len(writes))); err != nil {
						t.Fatal(err)
					}
				}
				initial := make([]string, stable)
				for i := range initial {
					initial[i] = fmt.Sprintf("p/stable/%d", i)
				}
				put(initial...)
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				wg.Go(func() { // races with the pages: new keys, deletes, overwrites of stable keys
					r := rand.New(rand.NewPCG(seed, 7))
					for i := 0; ctx.Err() == nil; i++ {
						w := []Write{{Key: fmt.Sprintf("p/bg/%d", r.IntN(churn)), Delete: i%3 == 0, ExpectedVersion: AnyVersion},
							{Key: fmt.Sprintf("p/stable/%d", r.IntN(stable)), Value: []byte("bg"), ExpectedVersion: AnyVersion}}
						if _, err := e.Apply(ctx, Batch{Mode: BestEffort, Writes: w}, make([]Result, 2)); err != nil && ctx.Err() == nil {
							t.Error(err)
							return
						}
					}
				})
				seen := make(map[string]int)
				err := ScanAll(context.Background(), e, ScanRequest{Prefix: "p/", Limit: 5 + rng.IntN(20), MaxBytes: 4096},
					func(page ScanPage) error {
						for _, it := range page.Items {
							seen[it.Key]++
						}
						for range 5 { // between pages: churn keys come and go, stable keys change
							if rng.IntN(2) == 0 {
								put(fmt.Sprintf("p/churn/%d", rng.IntN(churn)))
							} else {
								put(fmt.Sprintf("p/stable/%d", rng.IntN(stable)))
							}
							k := fmt.Sprintf("p/churn/%d", rng.IntN(churn))
							if _, err := e.Apply(context.Background(), Batch{Mode: BestEffort, Writes: []Write{{Key: k, Delete: true, ExpectedVersion: AnyVersion}}}, make([]Result, 1)); err != nil {
								return err
							}
						}
						return nil
					})
				cancel()
				wg.Wait()
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				for k, n := range seen {
					if n != 1 {
						t.Errorf("seed %d: key %q returned %d times", seed, k, n)
					}
				}
				for i := range stable {
					if k := fmt.Sprintf("p/stable/%d", i); seen[k] != 1 {
						t.Errorf("seed %d: key %q, present throughout, returned %d times", seed, k, seen[k])
					}
				}
			})
		}
	}
}

// TestScanBounds checks the page bounds: at most Limit items, at most MaxBytes of keys and values
// unless the page holds one item, values left out with KeysOnly.
func TestScanBounds(t *testing.T) {
	s, err := NewMemory(Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writes := make([]Write, 100)
	for i := range writes {
		writes[i] = Write{Key: fmt.Sprintf("k%03d", i), Value: make([]byte, 96), ExpectedVersion: AnyVersion}
	}
	if _, err := s.Apply(context.Background(), Batch{Mode: Atomic, Writes: writes}, make([]Result, len(writes))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req       ScanRequest
		wantItems int
	}{
		{ScanRequest{Limit: 7, MaxBytes: 1 << 20}, 7},
		{ScanRequest{Limit: 100, MaxBytes: 1000}, 10}, // 100 bytes an item
		{ScanRequest{Limit: 100, MaxBytes: 1}, 1},     // the first item always fits
		{ScanRequest{Limit: 100, MaxBytes: 40, KeysOnly: true}, 10},
	} {
		page, err := s.Scan(context.Background(), tc.req)
		if err != nil || len(page.Items) != tc.wantItems || page.Next == nil {
			t.Errorf("%+v: %d items, next %v, err %v; want %d items and a next cursor", tc.req, len(page.Items), page.Next != nil, err, tc.wantItems)
		}
		for _, it := range page.Items {
			if tc.req.KeysOnly != (it.Value == nil) || it.Version != 1 {
				t.Errorf("%+v: item %+v", tc.req, it)
			}
		}
	}
	if _, err := s.Scan(context.Background(), ScanRequest{Limit: 0, MaxBytes: 1}); err == nil {
		t.Error("a zero limit was taken")
	}
}

// TestScanBadCursor feeds Scan cursors it did not make, and one from before a restart: each is
// refused with ErrBadCursor.
func TestScanBadCursor(t *testing.T) {
	sub := openSubject(t, durableKind, Options{Shards: 4})
	put := []Write{{Key: "a", Value: []byte("1"), ExpectedVersion: AnyVersion}, {Key: "b", Value: []byte("2"), ExpectedVersion: AnyVersion}}
	if _, err := sub.engine().Apply(context.Background(), Batch{Mode: Atomic, Writes: put}, make([]Result, 2)); err != nil {
		t.Fatal(err)
	}
	page, err := sub.engine().Scan(context.Background(), ScanRequest{Limit: 1, MaxBytes: 100})
	if err != nil || page.Next == nil {
		t.Fatalf("first page: next %v, err %v", page.Next, err)
	}
	good := page.Next
	bad := map[string][]byte{
		"empty":         {},
		"short":         good[:10],
		"version":       append([]byte{9}, good[1:]...),
		"kind":          append(append([]byte{}, good[:17]...), append([]byte{7}, good[18:]...)...),
		"from with key": append(append([]byte{}, good[:17]...), append([]byte{fromHash}, good[18:]...)...),
		"seed":          append(append([]byte{good[0]}, make([]byte, 8)...), good[9:]...),
	}
	for name, c := range bad {
		if _, err := sub.engine().Scan(context.Background(), ScanRequest{Cursor: c, Limit: 1, MaxBytes: 100}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s cursor %x: err %v; want ErrBadCursor", name, c, err)
		}
	}
	sub.reopen()
	if _, err := sub.engine().Scan(context.Background(), ScanRequest{Cursor: good, Limit: 1, MaxBytes: 100}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("a cursor from before the restart: err %v; want ErrBadCursor", err)
	}
}

// TestScanVisitBudget ends pages at the visit budget: with a budget of one key a page reads one
// shard that holds keys, so a prefix that matches nothing gives empty pages with a cursor, one a
// shard, and a scan still returns every key once.
func TestScanVisitBudget(t *testing.T) {
	s, err := NewMemory(Options{Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writes := make([]Write, 64)
	for i := range writes {
		writes[i] = Write{Key: fmt.Sprintf("k%d", i), Value: []byte("v"), ExpectedVersion: AnyVersion}
	}
	if _, err := s.Apply(context.Background(), Batch{Mode: Atomic, Writes: writes}, make([]Result, len(writes))); err != nil {
		t.Fatal(err)
	}
	// A page ends after each shard that holds keys, but the last; the final page reaches the end.
	wantPages := 1
	for i := range len(s.shards) - 1 {
		if s.shards[i].len() > 0 {
			wantPages++
		}
	}
	for _, tc := range []struct {
		prefix   string
		wantKeys int
	}{{"nothing", 0}, {"k", 64}} {
		req := ScanRequest{Prefix: tc.prefix, Limit: 1000, MaxBytes: 1 << 20}
		seen, pages := map[string]bool{}, 0
		for {
			page, err := s.scanPage(context.Background(), req, 1)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, it := range page.Items {
				if seen[it.Key] {
					t.Fatalf("%q: key %q twice", tc.prefix, it.Key)
				}
				seen[it.Key] = true
			}
			if page.Next == nil {
				break
			}
			req.Cursor = page.Next
		}
		if len(seen) != tc.wantKeys || pages != wantPages || wantPages < 2 {
			t.Errorf("prefix %q: %d keys in %d pages; want %d keys in %d pages (one a shard)", tc.prefix, len(seen), pages, tc.wantKeys, wantPages)
		}
	}
}

// TestCutIsOneRevision cuts while a writer keeps rewriting pairs of keys in ATOMIC batches (both
// keys of a pair get the same value): every pair in the cut agrees, every version is at or below
// the cut's revision, and what the writer does after the cut does not show.
func TestCutIsOneRevision(t *testing.T) {
	for _, kind := range []engineKind{memoryKind, durableKind} {
		t.Run(kind.name, func(t *testing.T) {
			sub := openSubject(t, kind, Options{Shards: 16})
			e := sub.engine()
			const pairs = 200
			write := func(ctx context.Context, i, v int) error {
				val := []byte(fmt.Sprint(v))
				w := []Write{{Key: fmt.Sprintf("a/%d", i), Value: val, ExpectedVersion: AnyVersion},
					{Key: fmt.Sprintf("b/%d", i), Value: val, ExpectedVersion: AnyVersion}}
				_, err := e.Apply(ctx, Batch{Mode: Atomic, Writes: w}, make([]Result, 2))
				return err
			}
			stop := pairwriter.Start(t, pairs, write)
			var cuts []Cut
			for range 5 {
				c, err := e.(Cutter).Cut(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				cuts = append(cuts, c)
			}
			stop()
			for n, c := range cuts {
				got := map[string]string{}
				err := ScanAll(context.Background(), c, ScanRequest{Limit: 37, MaxBytes: 1 << 20}, func(p ScanPage) error {
					if p.Revision != c.Revision() {
						return fmt.Errorf("a page at revision %d of a cut at %d", p.Revision, c.Revision())
					}
					for _, it := range p.Items {
						if it.Version > c.Revision() {
							return fmt.Errorf("key %q at version %d, after the cut at %d", it.Key, it.Version, c.Revision())
						}
						got[it.Key] = string(it.Value)
					}
					return nil
				})
				if err != nil {
					t.Fatalf("cut %d: %v", n, err)
				}
				if len(got) != 2*pairs {
					t.Fatalf("cut %d: %d keys, want %d", n, len(got), 2*pairs)
				}
				for i := range pairs {
					if a, b := got[fmt.Sprintf("a/%d", i)], got[fmt.Sprintf("b/%d", i)]; a != b {
						t.Fatalf("cut %d at revision %d: pair %d is half written (%s, %s)", n, c.Revision(), i, a, b)
					}
				}
			}
		})
	}
}
