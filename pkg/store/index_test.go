package store

import (
	"math/rand/v2"
	"testing"
)

// TestHashIndexMatchesMap runs random sets and deletes against a hashIndex and a Go map side
// by side and checks they agree after every step. Hashes are drawn from a small set whose
// low bits collide, so probe runs are long, wrap around the table's end and are cut by
// deletes in their middle; every hash's presence is checked, and the index is walked whole.
func TestHashIndexMatchesMap(t *testing.T) {
	const seed = 7
	rng := rand.New(rand.NewPCG(seed, seed))
	var x hashIndex
	model := map[uint64]arenaRef{}
	hashes := make([]uint64, 300)
	for i := range hashes {
		// Few distinct low bits: many hashes share a home slot.
		hashes[i] = rng.Uint64()&^0xff | uint64(232+rng.IntN(24)) // homes at the end of the table: runs wrap
	}
	for step := range 20_000 {
		h := hashes[rng.IntN(len(hashes))]
		if rng.IntN(3) == 0 {
			_, had := model[h]
			if got := x.del(h); got != had {
				t.Fatalf("seed %d step %d: del(%#x) = %v, want %v", seed, step, h, got, had)
			}
			delete(model, h)
		} else {
			ref := arenaRef{chunk: uint32(rng.IntN(5)), off: rng.Uint32()}
			x.set(h, ref)
			model[h] = ref
		}
		if x.len() != len(model) {
			t.Fatalf("seed %d step %d: len %d, want %d", seed, step, x.len(), len(model))
		}
		if step%97 != 0 {
			continue
		}
		for _, h := range hashes {
			want, wantOK := model[h]
			if got, ok := x.get(h); ok != wantOK || got != want {
				t.Fatalf("seed %d step %d: get(%#x) = %v %v, want %v %v", seed, step, h, got, ok, want, wantOK)
			}
		}
		seen := 0
		x.each(func(h uint64, ref arenaRef) {
			seen++
			if model[h] != ref {
				t.Fatalf("seed %d step %d: each gave %#x -> %v, want %v", seed, step, h, ref, model[h])
			}
		})
		if seen != len(model) {
			t.Fatalf("seed %d step %d: each visited %d, want %d", seed, step, seen, len(model))
		}
	}
}

// BenchmarkIndexLookup compares a lookup followed by a read of the entry it points to, with
// 2M keys resident, for a Go map and for hashIndex (ns/op is per key):
//
//	go test -run '^$' -bench IndexLookup ./pkg/store/
func BenchmarkIndexLookup(b *testing.B) {
	const n = 2 << 20
	const entrySize = 112
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := make([]uint64, n)
	m := make(map[uint64]arenaRef, n)
	var x hashIndex
	var a arena
	for i := range hashes {
		hashes[i] = rng.Uint64()
		ref, _ := a.alloc(entrySize)
		m[hashes[i]] = ref
		x.set(hashes[i], ref)
	}
	perm := rng.Perm(n) // visit keys out of insertion order, as a workload would
	run := func(b *testing.B, lookup func(uint64) arenaRef) {
		var sum byte
		i := 0
		for b.Loop() {
			sum += a.bytes(lookup(hashes[perm[i%n]]), 1)[0]
			i++
		}
		indexSink = sum
	}
	b.Run("gomap", func(b *testing.B) { run(b, func(h uint64) arenaRef { return m[h] }) })
	b.Run("hashIndex", func(b *testing.B) {
		run(b, func(h uint64) arenaRef { ref, _ := x.get(h); return ref })
	})
}

// indexSink keeps the benchmark's reads from being optimised away.
var indexSink byte
