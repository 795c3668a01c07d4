package store

import (
	"context"
	"math"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"
)

// BenchmarkGCResident measures what the Go GC costs with 10 million keys resident under a
// steady write load of 100 000 keys/s (PutAll of 16 over the resident keys, paced, each call
// also allocating the 5 KB of garbage a server's decoding of such a call does): the heap, the
// fraction of CPU the GC used, GC cycles, the p99 and worst stop-the-world pause, and the wall
// time of one forced full collection (what marking the resident store costs) and the heap
// left after it.
//
//	go test -run '^$' -bench GCResident -benchtime 1x -timeout 30m ./pkg/store/
func BenchmarkGCResident(b *testing.B) {
	const (
		resident = 10_000_000
		rate     = 100_000 // keys per second
		batch    = 16
		seconds  = 60
		garbage  = 5 << 10 // bytes per call, as the server allocates decoding a PutAll(16)
	)
	s := newTestMemory(b, Options{Shards: 256})
	keys := make([]string, resident)
	for i := range keys {
		keys[i] = "user/" + strconv.Itoa(i) + "/profile"
	}
	value := make([]byte, 64)
	w := make([]Write, 1000)
	res := make([]Result, len(w))
	ctx := context.Background()
	for start := 0; start < resident; start += len(w) {
		for i := range w {
			w[i] = Write{Key: keys[start+i], Value: value, ExpectedVersion: AnyVersion}
		}
		if _, err := s.Apply(ctx, Batch{Mode: BestEffort, Writes: w}, res); err != nil {
			b.Fatal(err)
		}
	}
	keys = nil
	runtime.GC()

	b.ResetTimer()
	before := readGCMetrics()
	began := time.Now()
	w, res = w[:batch], res[:batch]
	interval := time.Second * batch / rate
	next := began
	for n := 0; time.Since(began) < seconds*time.Second; n++ {
		for i := range w {
			w[i] = Write{Key: "user/" + strconv.Itoa((n*batch+i*7919)%resident) + "/profile",
				Value: make([]byte, 64), ExpectedVersion: AnyVersion}
		}
		if _, err := s.Apply(ctx, Batch{Mode: BestEffort, Writes: w}, res); err != nil {
			b.Fatal(err)
		}
		sink = make([]byte, garbage)
		if next = next.Add(interval); time.Until(next) > 0 {
			time.Sleep(time.Until(next))
		}
	}
	after := readGCMetrics()
	forced := time.Now()
	runtime.GC()
	b.ReportMetric(float64(time.Since(forced).Microseconds())/1e3, "full-gc-ms")
	b.ReportMetric(float64(readGCMetrics().heap)/(1<<20), "live-MiB")
	b.StopTimer()

	gcCPU := after.gcCPU - before.gcCPU
	totalCPU := after.totalCPU - before.totalCPU
	b.ReportMetric(float64(after.heap)/(1<<20), "heap-MiB")
	b.ReportMetric(100*gcCPU/totalCPU, "gc-cpu-%")
	b.ReportMetric(float64(after.cycles-before.cycles), "gc-cycles")
	p99, worst := pauseQuantiles(before.pauses, after.pauses, 0.99)
	b.ReportMetric(p99*1e3, "stw-p99-ms")
	b.ReportMetric(worst*1e3, "stw-max-ms")
	runtime.KeepAlive(s)
}

// sink keeps the emulated per-call garbage from being optimised away.
var sink []byte

type gcMetrics struct {
	heap            uint64
	gcCPU, totalCPU float64
	cycles          uint64
	pauses          *metrics.Float64Histogram
}

func readGCMetrics() gcMetrics {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/sched/pauses/total/gc:seconds"},
	}
	metrics.Read(samples)
	return gcMetrics{
		heap:     samples[0].Value.Uint64(),
		gcCPU:    samples[1].Value.Float64(),
		totalCPU: samples[2].Value.Float64(),
		cycles:   samples[3].Value.Uint64(),
		pauses:   samples[4].Value.Float64Histogram(),
	}
}

// pauseQuantiles returns the q-quantile and the largest of the pauses recorded between two
// readings of a pause histogram (bucket upper bounds).
func pauseQuantiles(before, after *metrics.Float64Histogram, q float64) (quantile, worst float64) {
	counts := make([]uint64, len(after.Counts))
	var total uint64
	for i := range counts {
		counts[i] = after.Counts[i] - before.Counts[i]
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	upper := func(i int) float64 {
		if u := after.Buckets[i+1]; !math.IsInf(u, 1) {
			return u
		}
		return after.Buckets[i]
	}
	var seen uint64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		seen += c
		if quantile == 0 && float64(seen) >= q*float64(total) {
			quantile = upper(i)
		}
		worst = upper(i)
	}
	return quantile, worst
}
