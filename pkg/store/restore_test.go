package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/putallkv/putallkv/pkg/wal"
)

// TestRecoveryRestoresInOrderOnEveryWorker writes keys many times over, across many small
// log segments and a snapshot taken midway, then recovers with four restore workers and checks
// that every key holds its last write, at its version: workers restore side by side, and a
// key's writes must still land in log order.
func TestRecoveryRestoresInOrderOnEveryWorker(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const seed = 99
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	open := func() *Durable {
		d, err := OpenDurable(DurableOptions{Options: Options{Shards: 16}, Dir: dir,
			WAL: wal.Options{Sync: wal.SyncNone, SegmentBytes: 8 << 10}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := open()
	type last struct {
		value   string
		version int64
		deleted bool
	}
	want := map[string]last{}
	for round := range 400 {
		if round == 200 {
			if err := d.Snapshot(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		var writes []Write
		seen := map[string]bool{}
		for range 1 + rng.IntN(32) {
			k := fmt.Sprintf("k%d", rng.IntN(300))
			if seen[k] {
				continue
			}
			seen[k] = true
			w := Write{Key: k, Value: []byte(fmt.Sprintf("%s@%d", k, round)), ExpectedVersion: AnyVersion}
			w.Delete = rng.IntN(10) == 0
			writes = append(writes, w)
		}
		res := make([]Result, len(writes))
		out, err := d.Apply(context.Background(), Batch{Mode: BestEffort, Writes: writes}, res)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range writes {
			if res[i].Code == OK {
				want[w.Key] = last{string(w.Value), out.Revision, w.Delete}
			}
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = open()
	defer d.Close()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	items := make([]Item, len(keys))
	if _, err := d.GetAll(context.Background(), keys, items); err != nil {
		t.Fatal(err)
	}
	live := 0
	for i, k := range keys {
		w, it := want[k], items[i]
		if w.deleted {
			if it.Found {
				t.Errorf("seed %d: %s recovered as %q; it was deleted last", seed, k, it.Value)
			}
			continue
		}
		live++
		if !it.Found || string(it.Value) != w.value || it.Version != w.version {
			t.Errorf("seed %d: %s recovered as %q v%d (found %v); want %q v%d", seed, k, it.Value, it.Version, it.Found, w.value, w.version)
		}
	}
	if got := d.Stats().Keys; got != int64(live) {
		t.Errorf("seed %d: %d keys recovered; want %d", seed, got, live)
	}
}
