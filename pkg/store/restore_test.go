package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
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
	bytes := d.Stats().Bytes
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
	if st := d.Stats(); st.Keys != int64(live) || st.Bytes != bytes {
		t.Errorf("seed %d: %d keys, %d bytes recovered; want %d, %d", seed, st.Keys, st.Bytes, live, bytes)
	}
}

// TestAdoptBlocks restores hand-made version 2 blocks: a key that comes twice keeps its higher
// version whichever block holds it, the gauges count each key once, a TTL is counted for the
// sweeper, and overwrites compact the shards' entries out of the shared blocks with every value
// intact. A block cut inside an entry is refused.
func TestAdoptBlocks(t *testing.T) {
	entry := func(key, value string, version, expiresAtMs int64) []byte {
		h := entryHeader{version: version, expiresAtMs: expiresAtMs, keyLen: uint32(len(key)), valLen: uint32(len(value))}
		b := make([]byte, h.size())
		putEntry(b, h, key, []byte(value))
		return b
	}
	var blocks [][]byte
	for b := range 3 {
		var blk []byte
		for i := range 50 {
			blk = append(blk, entry(fmt.Sprintf("k%03d", b*50+i), fmt.Sprintf("v%d", b*50+i), int64(b*50+i+1), 0)...)
		}
		blocks = append(blocks, blk)
	}
	blocks[0] = append(blocks[0], entry("twice", "new", 500, 0)...)
	blocks[2] = append(blocks[2], entry("twice", "old", 400, 0)...)
	blocks[1] = append(blocks[1], entry("ttl", "x", 7, 4_000_000_000_000)...)

	m, err := NewMemory(Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	maxVersion, err := m.adoptBlocks(blocks)
	if err != nil || maxVersion != 500 {
		t.Fatalf("adoptBlocks = %d, %v; want 500, nil", maxVersion, err)
	}
	want := map[string]string{"twice": "new", "ttl": "x"}
	for i := range 150 {
		want[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("v%d", i)
	}
	check := func(when string) {
		t.Helper()
		var bytes int64
		for k, v := range want {
			bytes += int64(len(k)+len(v)) + KeyOverhead
			items := make([]Item, 1)
			if _, err := m.GetAll(context.Background(), []string{k}, items); err != nil || !items[0].Found || string(items[0].Value) != v {
				t.Fatalf("%s: %s = %+v, %v; want %q", when, k, items[0], err, v)
			}
		}
		if st := m.Stats(); st.Keys != int64(len(want)) || st.Bytes != bytes {
			t.Fatalf("%s: %d keys, %d bytes; want %d, %d", when, st.Keys, st.Bytes, len(want), bytes)
		}
		expiring := 0
		for i := range m.shards {
			expiring += m.shards[i].expiring
		}
		if expiring != 1 {
			t.Fatalf("%s: %d keys counted as expiring; want 1", when, expiring)
		}
	}
	check("adopted")

	for round := range 3 { // every key replaced three times: the shards compact
		for k := range want {
			if k == "ttl" {
				continue
			}
			want[k] = fmt.Sprintf("%s round %d %s", k, round, strings.Repeat("x", 2000))
			applyTagged(t, m, Atomic, "", put(k, want[k]))
		}
	}
	check("overwritten")
	for i := range m.shards {
		for _, c := range m.shards[i].arena.chunks {
			for _, blk := range blocks {
				if len(c) > 0 && &c[0] == &blk[0] {
					t.Errorf("shard %d still references block at %p after compaction", i, &blk[0])
				}
			}
		}
	}

	m2, err := NewMemory(Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	cut := [][]byte{blocks[0][:len(blocks[0])-3]}
	if _, err := m2.adoptBlocks(cut); !errors.Is(err, errBadBlock) {
		t.Fatalf("adoptBlocks of a block cut inside an entry = %v; want errBadBlock", err)
	}
}
