package store

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestShardHashCollision puts two keys with one hash (forced) and checks each is found,
// overwritten and removed on its own, in either order.
func TestShardHashCollision(t *testing.T) {
	for _, removeFirst := range []bool{true, false} {
		sh := newShard()
		const h = 42
		if sh.put("a", h, sh.find("a", h), []byte("1"), 1, 0) != 1 || sh.put("b", h, sh.find("b", h), []byte("2"), 2, 0) != 1 {
			t.Fatal("puts did not add keys")
		}
		for _, k := range []string{"a", "b"} {
			if i := sh.find(k, h); i == noSlot || string(sh.key(i)) != k {
				t.Fatalf("find(%s) = %d", k, i)
			}
		}
		sh.put("b", h, sh.find("b", h), []byte("22"), 3, 0)
		gone, kept := "a", "b"
		if !removeFirst {
			gone, kept = "b", "a"
		}
		if sh.remove(sh.find(gone, h)) != -1 {
			t.Fatal("remove did not count a key")
		}
		if sh.find(gone, h) != noSlot {
			t.Fatalf("%s found after remove", gone)
		}
		i := sh.find(kept, h)
		if i == noSlot || string(sh.key(i)) != kept {
			t.Fatalf("%s lost when %s was removed", kept, gone)
		}
		sh.remove(i)
		if len(sh.index) != 0 || len(sh.overflow) != 0 {
			t.Fatalf("index %v overflow %v left over", sh.index, sh.overflow)
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
	for k := range keys {
		sh.put(fmt.Sprint(k), uint64(k), noSlot, value(k, 0), 1, 0)
	}
	early := sh.value(sh.find("7", 7))
	earlyCopy := bytes.Clone(early)
	rounds := 2*compactMinDead/(keys*200) + 2
	for r := 1; r <= rounds; r++ {
		for k := range keys {
			sh.put(fmt.Sprint(k), uint64(k), sh.find(fmt.Sprint(k), uint64(k)), value(k, r), int64(r+1), 0)
		}
	}
	if live := sh.arena.used - sh.arena.dead; sh.arena.dead > compactMinDead || live > 2*keys*250 {
		t.Fatalf("arena used %d dead %d: compaction did not reclaim", sh.arena.used, sh.arena.dead)
	}
	for k := range keys {
		i := sh.find(fmt.Sprint(k), uint64(k))
		if got := sh.value(i); !bytes.Equal(got, value(k, rounds)) {
			t.Fatalf("key %d reads %q", k, got)
		}
	}
	if !bytes.Equal(early, earlyCopy) {
		t.Fatal("a value handed out before compaction changed")
	}
	// Deletes reclaim too, and freed slots are reused.
	for k := range keys {
		sh.remove(sh.find(fmt.Sprint(k), uint64(k)))
	}
	sh.put("again", 1000, noSlot, []byte("v"), 99, 0)
	if len(sh.slots) != keys || len(sh.free) != keys-1 {
		t.Fatalf("slots %d free %d: freed slots not reused", len(sh.slots), len(sh.free))
	}
}

// TestValueIsCapped checks that appending to a value read from the store cannot write into the
// arena.
func TestValueIsCapped(t *testing.T) {
	sh := newShard()
	sh.put("a", 1, noSlot, []byte("first"), 1, 0)
	sh.put("b", 2, noSlot, []byte("second"), 2, 0)
	v := sh.value(sh.find("a", 1))
	_ = append(v, "XXXX"...)
	if got := string(sh.value(sh.find("b", 2))); got != "second" {
		t.Fatalf("b reads %q after an append to a's value", got)
	}
}
