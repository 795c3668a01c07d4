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
			benchDurable(b, goroutines, 1, func(l *Log, rec []byte) error {
				lsn, err := l.Append(rec)
				if err == nil {
					err = l.Wait(context.Background(), lsn)
				}
				return err
			})
		})
	}
}

// BenchmarkHeldGroups measures what Durable.ApplyAll does for a PutAllMany round trip: 8
// goroutines each append 16 records of 1 KiB under a Hold and wait once for the last. One op is
// one record made durable; records/fsync shows how many groups of 16 share an fsync.
func BenchmarkHeldGroups(b *testing.B) {
	const group = 16
	benchDurable(b, 8, group, func(l *Log, rec []byte) error {
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
		return err
	})
}

// benchDurable runs goroutines that each call round, which makes records (1 KiB each)
// durable, until b.N records are, and reports records/s and records per fsync.
func benchDurable(b *testing.B, goroutines, records int, round func(l *Log, rec []byte) error) {
	obs := &countingObserver{}
	l := mustOpen(b, b.TempDir(), Options{Observer: obs})
	rec := make([]byte, 1024)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(rec)))
	b.ResetTimer()
	for range goroutines {
		wg.Go(func() {
			for next.Add(int64(records)) <= int64(b.N) {
				if err := round(l, rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(obs.records.Load())/float64(max(obs.syncs.Load(), 1)), "records/fsync")
	mustClose(b, l)
}
