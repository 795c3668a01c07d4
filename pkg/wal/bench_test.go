package wal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendWait measures Append+Wait of 1 KiB records under SyncAlways: one op is one
// record made durable. records/fsync shows how many records share an fsync (group commit).
func BenchmarkAppendWait(b *testing.B) {
	for _, goroutines := range []int{1, 50} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			obs := &countingObserver{}
			l := mustOpen(b, b.TempDir(), Options{Observer: obs})
			rec := make([]byte, 1024)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(int64(len(rec)))
			b.ResetTimer()
			for range goroutines {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						lsn, err := l.Append(rec)
						if err == nil {
							err = l.Wait(context.Background(), lsn)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/float64(max(obs.syncs.Load(), 1)), "records/fsync")
			mustClose(b, l)
		})
	}
}

// BenchmarkHeldGroups measures what Durable.ApplyAll does for a PutAllMany round trip: 8
// goroutines each append 16 records of 1 KiB under a Hold and wait once for the last. One op is
// one record made durable; records/fsync shows how many groups of 16 share an fsync.
func BenchmarkHeldGroups(b *testing.B) {
	const goroutines, group = 8, 16
	obs := &countingObserver{}
	l := mustOpen(b, b.TempDir(), Options{Observer: obs})
	rec := make([]byte, 1024)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(rec)))
	b.ResetTimer()
	for range goroutines {
		wg.Go(func() {
			for next.Add(group) <= int64(b.N) {
				release := l.Hold()
				var last uint64
				var err error
				for range group {
					if last, err = l.Append(rec); err != nil {
						break
					}
				}
				release()
				if err == nil {
					err = l.Wait(context.Background(), last)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	syncs := float64(max(obs.syncs.Load(), 1))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(obs.records.Load())/syncs, "records/fsync")
	mustClose(b, l)
}
