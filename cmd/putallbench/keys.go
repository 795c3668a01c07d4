package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// keyChooser picks the distinct keys of one operation out of the key space, by one of the
// distributions --dist names.
type keyChooser interface {
	choose(rng *rand.Rand, keys []string, buf []string)
}

// parseDist reads --dist: "uniform" (a run of consecutive keys from a random start),
// "zipf:S" (each key drawn with probability proportional to 1/rank^S, distinct within an
// operation) or "hot:X" (a fraction X of operations carry key 0, the rest of their keys
// uniform; with one key per operation, as the batcher sends, key 0 takes X of the writes).
func parseDist(s string, keySpace int) (keyChooser, error) {
	name, arg, _ := strings.Cut(s, ":")
	switch name {
	case "uniform":
		if arg == "" {
			return uniformKeys{}, nil
		}
	case "zipf":
		if exp, err := strconv.ParseFloat(arg, 64); err == nil && exp > 0 && exp <= 10 {
			return newZipfKeys(exp, keySpace), nil
		}
	case "hot":
		if share, err := strconv.ParseFloat(arg, 64); err == nil && share > 0 && share <= 1 {
			return hotKey{share: share}, nil
		}
	}
	return nil, fmt.Errorf("--dist: want uniform, zipf:S (0 < S <= 10) or hot:X (0 < X <= 1), got %q", s)
}

// uniformKeys is a run of consecutive keys from a uniformly chosen start.
type uniformKeys struct{}

func (uniformKeys) choose(rng *rand.Rand, keys []string, buf []string) {
	first := rng.IntN(len(keys))
	for i := range buf {
		buf[i] = keys[(first+i)%len(keys)]
	}
}

// oneSlotKeys is a run of consecutive keys that starts at a multiple of the run's length, so
// that every key of the run carries the same hash tag (see keyNames) and maps to one Redis
// hash slot.
type oneSlotKeys struct{}

func (oneSlotKeys) choose(rng *rand.Rand, keys []string, buf []string) {
	first := rng.IntN(len(keys)/len(buf)) * len(buf)
	copy(buf, keys[first:first+len(buf)])
}

// keyNames returns the key space's names: bench-N, or with oneSlot, {gG}bench-N where G is N
// divided by the keys of one operation, so that each aligned run of them shares a hash tag.
func keyNames(n, opKeys int, oneSlot bool) []string {
	keys := make([]string, n)
	for i := range keys {
		if oneSlot {
			keys[i] = fmt.Sprintf("{g%d}bench-%09d", i/opKeys, i)
		} else {
			keys[i] = fmt.Sprintf("bench-%09d", i)
		}
	}
	return keys
}

// zipfKeys draws keys by rank from a Zipf distribution through its cumulative weights.
type zipfKeys struct{ cdf []float64 }

func newZipfKeys(exp float64, n int) zipfKeys {
	cdf := make([]float64, n)
	sum := 0.0
	for i := range cdf {
		sum += math.Pow(float64(i+1), -exp)
		cdf[i] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	return zipfKeys{cdf: cdf}
}

func (z zipfKeys) choose(rng *rand.Rand, keys []string, buf []string) {
	for i := range buf {
		for {
			rank, _ := slices.BinarySearch(z.cdf, rng.Float64())
			k := keys[min(rank, len(keys)-1)]
			if !slices.Contains(buf[:i], k) { // a batch holds a key once
				buf[i] = k
				break
			}
		}
	}
}

// hotKey puts key 0 into a share of the operations.
type hotKey struct{ share float64 }

func (h hotKey) choose(rng *rand.Rand, keys []string, buf []string) {
	uniformKeys{}.choose(rng, keys[1:], buf) // the others never include key 0
	if rng.Float64() < h.share {
		buf[rng.IntN(len(buf))] = keys[0]
	}
}
