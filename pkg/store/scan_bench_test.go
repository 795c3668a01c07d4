package store

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkScan is a full scan of a store of 200 000 keys (64-byte values) in pages of 1000:
// ns/op is per key returned.
func BenchmarkScan(b *testing.B) {
	s := filledMemory(b, 200_000)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		if err := ScanAll(context.Background(), s, ScanRequest{Limit: 1000, MaxBytes: 4 << 20}, func(p ScanPage) error {
			n += len(p.Items)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutAllBesideScan measures the latency of PutAll calls of 16 keys, from 4 writers on a
// store of 200 000 keys: alone, with a goroutine scanning the whole store in a loop beside them,
// and, as the control, with a goroutine that only burns CPU (it takes no lock): it reports the
// calls' p50 and p99 and, beside a scan, the keys/s scanned. The scan reads one shard at a time
// under its read lock; a writer waits only for a scan of its own shard. What a scan adds over the
// control is what its locks cost the writers; the rest is sharing the cores.
func BenchmarkPutAllBesideScan(b *testing.B) {
	for _, beside := range []string{"alone", "beside-scan", "beside-busy-loop"} {
		scanning := beside == "beside-scan"
		b.Run(beside, func(b *testing.B) {
			s := filledMemory(b, 200_000)
			keys := benchKeys(200_000)
			stop := make(chan struct{})
			var scanned int
			var wg sync.WaitGroup
			if scanning {
				wg.Go(func() {
					for {
						err := ScanAll(context.Background(), s, ScanRequest{Limit: 1000, MaxBytes: 4 << 20}, func(p ScanPage) error {
							scanned += len(p.Items)
							select {
							case <-stop:
								return context.Canceled
							default:
								return nil
							}
						})
						if err != nil {
							return
						}
					}
				})
			}
			if beside == "beside-busy-loop" {
				wg.Go(func() {
					for x := uint64(1); ; x = x*6364136223846793005 + 1 {
						if x&0xffff == 0 {
							select {
							case <-stop:
								scanned = int(x & 1) // keeps x live
								return
							default:
							}
						}
					}
				})
			}
			const writers = 4
			lat := make([][]time.Duration, writers)
			start := time.Now()
			b.ResetTimer()
			var ww sync.WaitGroup
			for g := range writers {
				ww.Go(func() {
					w, res, value := make([]Write, benchBatch), make([]Result, benchBatch), make([]byte, 64)
					for i := g; i < b.N; i += writers {
						benchWrites(keys, i*7919, w, value)
						t := time.Now()
						if _, err := s.Apply(context.Background(), Batch{Mode: BestEffort, Writes: w}, res); err != nil {
							b.Error(err)
							return
						}
						lat[g] = append(lat[g], time.Since(t))
					}
				})
			}
			ww.Wait()
			b.StopTimer()
			elapsed := time.Since(start)
			close(stop)
			wg.Wait()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds()), "p99-ns")
			}
			if scanning {
				b.ReportMetric(float64(scanned)/elapsed.Seconds(), "scanned-keys/s")
			}
		})
	}
}

// filledMemory is a Memory of n keys (benchKeys) with 64-byte values.
func filledMemory(b *testing.B, n int) *Memory {
	s := newTestMemory(b, Options{Shards: benchShards})
	keys := benchKeys(n)
	fill := make([]Write, 1000)
	for start := 0; start < n; start += len(fill) {
		benchWrites(keys, start, fill, make([]byte, 64))
		apply(b, s, BestEffort, fill...)
	}
	return s
}
