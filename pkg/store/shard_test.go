package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func shardValue(sh *shard, key string, h uint64) []byte {
	l := sh.find(key, h)
	if !l.found() {
		return nil
	}
	_, _, v := sh.entry(l.ref)
	return v
}

// TestShardHashCollision puts two keys with one hash (forced) and checks each is found,
// overwritten and removed on its own, in either order.
func TestShardHashCollision(t *testing.T) {
	for _, removeFirst := range []bool{true, false} {
		sh := newShard()
		const h = 42
		if sh.put("a", h, sh.find("a", h), []byte("1"), 1, 0) != 1 || sh.put("b", h, sh.find("b", h), []byte("2"), 2, 0) != 1 {
			t.Fatal("puts did not add keys")
		}
		sh.put("b", h, sh.find("b", h), []byte("22"), 3, 0)
		for k, want := range map[string]string{"a": "1", "b": "22"} {
			if got := string(shardValue(&sh, k, h)); got != want {
				t.Fatalf("%s reads %q; want %q", k, got, want)
			}
		}
		gone, kept := "a", "b"
		if !removeFirst {
			gone, kept = "b", "a"
		}
		if sh.remove(gone, h, sh.find(gone, h)) != -1 {
			t.Fatal("remove did not count a key")
		}
		if sh.find(gone, h).found() {
			t.Fatalf("%s found after remove", gone)
		}
		if !sh.find(kept, h).found() || sh.len() != 1 {
			t.Fatalf("%s lost when %s was removed", kept, gone)
		}
		sh.remove(kept, h, sh.find(kept, h))
		if sh.index.len() != 0 || len(sh.overflow) != 0 {
			t.Fatalf("index %v overflow %v left over", sh.index.slots, sh.overflow)
		}
	}
}

// TestShardCompactsDeadBytes overwrites keys until compaction must have run, and checks that
// the arena shrank back, every key reads its last value, and a value read before compaction
// still holds its bytes.
func TestShardCompactsDeadBytes(t *testing.T) {
	sh := newShard()
	value := func(k, round int) []byte {
		return []byte(fmt.Sprintf("k%d-r%d-%s", k, round, strings.Repeat("x", 200)))
	}
	const keys = 100
	write := func(k, round int) {
		key, h := fmt.Sprint(k), uint64(k)
		sh.put(key, h, sh.find(key, h), value(k, round), int64(round+1), 0)
		sh.compactIfWasteful()
	}
	for k := range keys {
		write(k, 0)
	}
	early := shardValue(&sh, "7", 7)
	earlyCopy := bytes.Clone(early)
	rounds := 2*compactMinDead/(keys*200) + 2
	for r := 1; r <= rounds; r++ {
		for k := range keys {
			write(k, r)
		}
	}
	if live := sh.arena.used - sh.arena.dead; sh.arena.dead > compactMinDead || live > 2*keys*260 {
		t.Fatalf("arena used %d dead %d: compaction did not reclaim", sh.arena.used, sh.arena.dead)
	}
	for k := range keys {
		if got := shardValue(&sh, fmt.Sprint(k), uint64(k)); !bytes.Equal(got, value(k, rounds)) {
			t.Fatalf("key %d reads %q", k, got)
		}
	}
	if !bytes.Equal(early, earlyCopy) {
		t.Fatal("a value handed out before compaction changed")
	}
	for k := range keys {
		key := fmt.Sprint(k)
		sh.remove(key, uint64(k), sh.find(key, uint64(k)))
	}
	sh.compactIfWasteful()
	if sh.len() != 0 || sh.arena.used > compactMinDead+keys*260 {
		t.Fatalf("after deleting everything: %d keys, arena used %d", sh.len(), sh.arena.used)
	}
}

// TestValueIsCapped checks that appending to a value read from the store cannot write into the
// arena.
func TestValueIsCapped(t *testing.T) {
	sh := newShard()
	sh.put("a", 1, loc{}, []byte("first"), 1, 0)
	sh.put("b", 2, loc{}, []byte("second"), 2, 0)
	_ = append(shardValue(&sh, "a", 1), "XXXX"...)
	if got := string(shardValue(&sh, "b", 2)); got != "second" {
		t.Fatalf("b reads %q after an append to a's value", got)
	}
}

// TestBatchesAcrossCompactions overwrites one shard's keys in batches until it has compacted
// several times, and checks every key after every batch.
func TestBatchesAcrossCompactions(t *testing.T) {
	s := newTestMemory(t, Options{Shards: 1})
	const keys = 100
	for round := range 3 * compactMinDead / (keys * 300) {
		w := make([]Write, keys)
		for k := range w {
			w[k] = put(fmt.Sprint("k", k), fmt.Sprintf("%d-%d-%s", round, k, strings.Repeat("v", 300)))
		}
		apply(t, s, BestEffort, w...)
		for k := range keys {
			it := get(s, fmt.Sprint("k", k))
			if want := fmt.Sprintf("%d-%d-", round, k); !it.Found || !strings.HasPrefix(string(it.Value), want) || it.Version != int64(round+1) {
				t.Fatalf("round %d key %d: %+v", round, k, it)
			}
		}
	}
	if sh := &s.shards[0]; sh.arena.dead >= compactMinDead+keys*400 {
		t.Fatalf("dead bytes %d: the shard never compacted", sh.arena.dead)
	}
}

// TestSortSmall checks the batch sort against slices.SortFunc by (hash, index), on hashes drawn
// from a few values so that equal hashes (whose keys must stay in index order) are common.
func TestSortSmall(t *testing.T) {
	const seed = 15
	r := rand.New(rand.NewPCG(seed, seed))
	for n := range smallSort + 1 {
		refs := make([]keyRef, n)
		for i := range refs {
			refs[i] = keyRef{hash: r.Uint64N(5) << 60, idx: int32(i)}
		}
		want := slices.Clone(refs)
		slices.SortFunc(want, compareRefs)
		sortSmall(refs)
		if !slices.Equal(refs, want) {
			t.Fatalf("seed %d, %d refs: sorted %v, want %v", seed, n, refs, want)
		}
	}
}
