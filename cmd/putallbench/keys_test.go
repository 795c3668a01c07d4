package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	return keys
}

// drawKeys runs ops operations of batch keys through c with a fixed seed and counts each key.
func drawKeys(t *testing.T, c keyChooser, keys []string, ops, batch int) map[string]int {
	t.Helper()
	const seed = 42
	rng := rand.New(rand.NewPCG(seed, 1))
	counts := map[string]int{}
	buf := make([]string, batch)
	for range ops {
		c.choose(rng, keys, buf)
		seen := map[string]bool{}
		for _, k := range buf {
			if seen[k] {
				t.Fatalf("seed %d: key %s twice in one operation %v", seed, k, buf)
			}
			seen[k] = true
			counts[k]++
		}
	}
	return counts
}

func TestZipfKeys(t *testing.T) {
	keys := benchKeys(1000)
	c, err := parseDist("zipf:1.1", len(keys))
	if err != nil {
		t.Fatal(err)
	}
	counts := drawKeys(t, c, keys, 20_000, 1)
	// P(rank 1) / P(rank 10) = 10^1.1 ≈ 12.6 for a Zipf exponent of 1.1.
	ratio := float64(counts["k0"]) / float64(counts["k9"])
	if math.Abs(ratio-12.6) > 3 {
		t.Fatalf("rank 1 drawn %d times, rank 10 %d: ratio %.1f, want about 12.6", counts["k0"], counts["k9"], ratio)
	}
	drawKeys(t, c, keys, 2_000, 16) // distinct within each batch (checked by drawKeys)
}

func TestHotKey(t *testing.T) {
	keys := benchKeys(1000)
	c, err := parseDist("hot:0.2", len(keys))
	if err != nil {
		t.Fatal(err)
	}
	const ops = 20_000
	for _, batch := range []int{1, 16} {
		counts := drawKeys(t, c, keys, ops, batch)
		if share := float64(counts["k0"]) / ops; math.Abs(share-0.2) > 0.02 {
			t.Errorf("batch %d: the hot key in %.3f of operations, want 0.2", batch, share)
		}
	}
}

func TestOneSlotKeys(t *testing.T) {
	cfg, err := parseFlags([]string{"--one-slot", "--batch", "16", "--keys", "1000", "--pid", "1,2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.pids) != 2 {
		t.Fatalf("--pid 1,2 parsed as %v", cfg.pids)
	}
	keys := keyNames(cfg.keySpace, cfg.opKeys(), cfg.oneSlot)
	rng := rand.New(rand.NewPCG(3, 3))
	buf := make([]string, cfg.opKeys())
	for range 200 {
		cfg.dist.choose(rng, keys, buf)
		if !oneSlot(buf) {
			t.Fatalf("one operation's keys %v span slots", buf)
		}
	}
	spread := benchKeys(16)
	if groups := bySlot(spread); oneSlot(spread) || len(groups) < 2 {
		t.Fatalf("16 keys without a hash tag: %d slot groups", len(groups))
	}
	if _, err := parseFlags([]string{"--one-slot", "--dist", "zipf:1.1"}, io.Discard); err == nil {
		t.Fatal("--one-slot with --dist zipf accepted")
	}
}
