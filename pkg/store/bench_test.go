package store

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/putallkv/putallkv/pkg/wal"
)

// The benchmarks compare one PutAll of 16 entries with 16 single-key writes. b.N counts
// keys, so ns/op and allocs/op read as per key.

const benchBatch = 16

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "bench-key-" + strconv.Itoa(i)
	}
	return keys
}

func benchWrites(keys []string, start int, w []Write, value []byte) {
	for i := range w {
		w[i] = Write{Key: keys[(start+i)%len(keys)], Value: value, ExpectedVersion: AnyVersion}
	}
}

func runBatches(b *testing.B, s *Memory, keys []string, batch int, next func() int) {
	value := make([]byte, 64)
	w := make([]Write, batch)
	res := make([]Result, batch)
	for i := 0; i < b.N; i += batch {
		benchWrites(keys, next(), w, value)
		if _, err := s.Apply(context.Background(), Batch{Mode: BestEffort, Writes: w}, res); err != nil {
			b.Fatal(err)
		}
	}
}

// benchApply writes batch-key calls over a key space of n keys, all resident beforehand (so
// every write overwrites, as in a steady state), from one goroutine or from GOMAXPROCS.
func benchApply(b *testing.B, n, batch int, parallel bool) {
	s := newTestMemory(b, Options{Shards: benchShards})
	keys := benchKeys(n)
	fill := make([]Write, 1000)
	for start := 0; start < n; start += len(fill) {
		benchWrites(keys, start, fill, make([]byte, 64))
		apply(b, s, BestEffort, fill...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		pos := 0
		runBatches(b, s, keys, batch, func() int { pos += batch; return pos })
		return
	}
	var pos atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		value := make([]byte, 64)
		w := make([]Write, batch)
		res := make([]Result, batch)
		for pb.Next() {
			// pb counts keys; one call writes batch keys.
			for i := 1; i < batch && pb.Next(); i++ {
			}
			benchWrites(keys, int(pos.Add(int64(batch))), w, value)
			if _, err := s.Apply(context.Background(), Batch{Mode: BestEffort, Writes: w}, res); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchShards is the shard count of the write benchmarks, the default of the server.
const benchShards = 256

// benchKeySpaces are the store sizes the write benchmarks run at: one that fits the CPU's
// caches, and one that does not.
var benchKeySpaces = []struct {
	name string
	n    int
}{{"keys=64k", 1 << 16}, {"keys=2M", 2 << 20}}

func benchWritesAt(b *testing.B, batch int, parallel bool) {
	for _, ks := range benchKeySpaces {
		b.Run(ks.name, func(b *testing.B) { benchApply(b, ks.n, batch, parallel) })
	}
}

func BenchmarkPutAll16(b *testing.B)          { benchWritesAt(b, benchBatch, false) }
func BenchmarkSinglePut(b *testing.B)         { benchWritesAt(b, 1, false) }
func BenchmarkPutAll16Parallel(b *testing.B)  { benchWritesAt(b, benchBatch, true) }
func BenchmarkSinglePutParallel(b *testing.B) { benchWritesAt(b, 1, true) }

// BenchmarkRecovery1M measures OpenDurable of a store of one million keys (64-byte values),
// from the log alone and from a snapshot:
//
//	go test -run '^$' -bench Recovery1M -benchtime 1x ./pkg/store/
func BenchmarkRecovery1M(b *testing.B) {
	for _, snapshot := range []bool{false, true} {
		name := "log"
		if snapshot {
			name = "snapshot"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			open := func() *Durable { // default segment size, no fsync while building
				d, err := OpenDurable(DurableOptions{Dir: dir, WAL: wal.Options{Sync: wal.SyncNone}})
				if err != nil {
					b.Fatal(err)
				}
				return d
			}
			d := open()
			keys := benchKeys(1_000_000)
			value := make([]byte, 64)
			w := make([]Write, 1000)
			for start := 0; start < len(keys); start += len(w) {
				benchWrites(keys, start, w, value)
				applyTagged(b, d, BestEffort, "", w...)
			}
			if snapshot {
				if err := d.Snapshot(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				d := open()
				b.StopTimer()
				if got := d.Stats().Keys; got != 1_000_000 {
					b.Fatalf("recovered %d keys", got)
				}
				_ = d.Close()
				b.StartTimer()
			}
		})
	}
}
