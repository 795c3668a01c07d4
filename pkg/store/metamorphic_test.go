package store

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/wal"
)

// TestMetamorphic runs one seeded random sequence of operations (batches in both modes with
// preconditions, TTLs and the odd repeated key, reads, clock steps, snapshots and restarts) against
// every engine configuration and requires the same answers from all: Memory with 1 and 256
// shards, and Durable under each fsync policy with 1 and 256 shards, restarted midway (and now
// and then). A restart and a snapshot change nothing a Memory answers, so the Durables must
// recover exactly what they acknowledged. The engines share a memory quota that the sequence
// runs into.
//
// The seed is fixed by default; vary it with -seed N (or PUTALLKV_TEST_SEED=N) and the length
// with -ops N:
//
//	go test ./pkg/store -run TestMetamorphic -seed 12345 -ops 5000
var (
	metamorphicSeed = flag.Uint64("seed", 0, "seed of TestMetamorphic's operations; 0: $PUTALLKV_TEST_SEED, else 1")
	metamorphicOps  = flag.Int("ops", 2000, "how many operations TestMetamorphic runs")
)

const (
	metaKeys     = 24   // the key space: small, so that writes meet
	metaMaxBytes = 2000 // the quota: about 20 keys of average size, so some batches are refused
)

// metaOp is one operation of the sequence.
type metaOp struct {
	kind   string // "batch", "get", "advance", "snapshot", "reopen"
	mode   Mode
	writes []Write
	keys   []string
	ms     int64
}

func (op metaOp) String() string {
	switch op.kind {
	case "batch":
		var b strings.Builder
		fmt.Fprintf(&b, "batch %s", op.mode)
		for _, w := range op.writes {
			if w.Delete {
				fmt.Fprintf(&b, " [delete %s expect=%d]", w.Key, w.ExpectedVersion)
			} else {
				fmt.Fprintf(&b, " [put %s %q expect=%d expires=%d]", w.Key, w.Value, w.ExpectedVersion, w.ExpiresAtMs)
			}
		}
		return b.String()
	case "get":
		return "get " + strings.Join(op.keys, " ")
	case "advance":
		return fmt.Sprintf("advance %d", op.ms)
	}
	return op.kind
}

func TestMetamorphic(t *testing.T) {
	seed := metamorphicTestSeed(t)
	t.Logf("seed %d (rerun with -seed %d)", seed, seed)
	refClock := &fakeClock{}
	ref := openSubject(t, memoryKind, Options{Shards: 256, MaxBytes: metaMaxBytes, Now: refClock.Now})
	ops, answers := generate(rand.New(rand.NewPCG(seed, seed)), ref, refClock, *metamorphicOps)
	kinds := []engineKind{memoryKind}
	for _, p := range []wal.SyncPolicy{wal.SyncAlways, wal.SyncInterval, wal.SyncNone} {
		kinds = append(kinds, engineKind{name: "durable-" + p.String(), durable: true, sync: p})
	}
	for _, kind := range kinds {
		for _, shards := range []int{1, 256} {
			t.Run(fmt.Sprintf("%s/shards=%d", kind.name, shards), func(t *testing.T) {
				t.Parallel()
				clock := &fakeClock{}
				sub := openSubject(t, kind, Options{Shards: shards, MaxBytes: metaMaxBytes, Now: clock.Now})
				for i, op := range ops {
					if got := runOp(sub, clock, op); got != answers[i] {
						t.Fatalf("seed %d, operation %d of %d: %v\n%s answered:\n%s\nmemory with 256 shards answered:\n%s",
							seed, i, len(ops), op, t.Name(), got, answers[i])
					}
				}
			})
		}
	}
}

// metamorphicTestSeed returns the seed of the operations: -seed, else $PUTALLKV_TEST_SEED, else 1.
func metamorphicTestSeed(t *testing.T) uint64 {
	if *metamorphicSeed != 0 {
		return *metamorphicSeed
	}
	if env := os.Getenv("PUTALLKV_TEST_SEED"); env != "" {
		seed, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("PUTALLKV_TEST_SEED=%q: %v", env, err)
		}
		return seed
	}
	return 1
}

// generate draws n operations and runs each against ref, whose clock is clock, as it goes,
// returning the operations and ref's answers. Preconditions are drawn from the versions ref has
// answered so far, so that compare-and-set hits as well as misses.
func generate(rng *rand.Rand, ref *subject, clock *fakeClock, n int) ([]metaOp, []string) {
	g := &generator{rng: rng, seen: map[string]int64{}}
	ops := make([]metaOp, n)
	answers := make([]string, n)
	for i := range ops {
		switch p := rng.IntN(100); {
		case i == n/2 || p == 0:
			ops[i] = metaOp{kind: "reopen"}
		case p < 2:
			ops[i] = metaOp{kind: "snapshot"}
		case p < 10:
			ops[i] = metaOp{kind: "advance", ms: rng.Int64N(30)}
		case p < 35:
			ops[i] = metaOp{kind: "get", keys: g.keys(1 + rng.IntN(6))}
		default:
			ops[i] = g.batch(clock.ms.Load())
		}
		answers[i] = runOp(ref, clock, ops[i])
		g.learn(answers[i])
	}
	return ops, answers
}

// generator draws operations over a small key space.
type generator struct {
	rng  *rand.Rand
	seen map[string]int64 // the last version an answer gave for each key
}

func (g *generator) key() string { return fmt.Sprintf("k%02d", g.rng.IntN(metaKeys)) }

func (g *generator) keys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = g.key()
	}
	return keys
}

// batch draws a batch of up to 6 writes on distinct keys, or now and then one key twice.
func (g *generator) batch(nowMs int64) metaOp {
	op := metaOp{kind: "batch", mode: Mode(g.rng.IntN(2))}
	n := g.rng.IntN(7)
	taken := map[string]bool{}
	for len(op.writes) < n {
		k := g.key()
		if taken[k] && g.rng.IntN(20) != 0 {
			continue
		}
		taken[k] = true
		w := Write{Key: k, ExpectedVersion: g.precondition(k)}
		if g.rng.IntN(4) == 0 {
			w.Delete = true
		} else {
			w.Value = []byte(strings.Repeat(string(rune('a'+g.rng.IntN(26))), g.rng.IntN(48)))
			if g.rng.IntN(4) == 0 {
				w.ExpiresAtMs = nowMs + 1 + g.rng.Int64N(60)
			}
		}
		op.writes = append(op.writes, w)
	}
	return op
}

// precondition draws an ExpectedVersion for key: none, create-only, the version last seen (a
// hit unless the key changed since) or one past it (a miss).
func (g *generator) precondition(key string) int64 {
	switch p := g.rng.IntN(20); {
	case p < 10:
		return AnyVersion
	case p < 13:
		return 0
	case p < 19:
		return g.seen[key]
	}
	return g.seen[key] + 1
}

// learn notes the versions an answer gave: "key: CODE version=N" and "key: "value" version=N".
func (g *generator) learn(answer string) {
	for _, line := range strings.Split(answer, "\n") {
		key, rest, ok := strings.Cut(line, ": ")
		if !ok || key == "error" {
			continue
		}
		_, v, ok := strings.Cut(rest, "version=")
		if !ok {
			g.seen[key] = 0 // absent
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		g.seen[key], _ = strconv.ParseInt(v, 10, 64)
	}
}

// runOp runs op against sub and returns its answer, with the engine's gauges after it (all but
// the quota refusals, which count since the engine opened).
func runOp(sub *subject, clock *fakeClock, op metaOp) string {
	var answer string
	switch op.kind {
	case "batch":
		results := make([]Result, len(op.writes))
		out, err := sub.engine().Apply(context.Background(), Batch{Mode: op.mode, Writes: op.writes}, results)
		answer = describeApply(op.writes, out, results, err)
	case "get":
		items := make([]Item, len(op.keys))
		rev, err := sub.engine().GetAll(context.Background(), op.keys, items)
		answer = describeGet(op.keys, rev, items, err)
	case "advance":
		clock.Advance(time.Duration(op.ms) * time.Millisecond)
	case "snapshot":
		sub.snapshot()
	case "reopen":
		sub.reopen()
	}
	st := sub.engine().Stats()
	return fmt.Sprintf("%s\nstats keys=%d revision=%d bytes=%d", answer, st.Keys, st.Revision, st.Bytes)
}
