package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/metrics"
	"sort"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// report is the JSON output of a run.
type report struct {
	Target      string       `json:"target"`
	Description string       `json:"description,omitempty"`
	Batch       int          `json:"keys_per_op"`
	ValueSize   int          `json:"value_size"`
	Steps       []stepResult `json:"steps"`
}

// stepResult is what one step measured. Latencies are per operation (a batch call, or one Put
// through the Batcher), in milliseconds; every key of a batch waits the whole call, so per-key
// percentiles equal per-call ones for a fixed batch size.
type stepResult struct {
	Concurrency int              `json:"concurrency"`
	TargetRate  float64          `json:"target_ops_per_sec,omitempty"`
	Ops         int64            `json:"ops"`
	Keys        int64            `json:"keys"`
	Seconds     float64          `json:"seconds"`
	KeysPerSec  float64          `json:"keys_per_sec"`
	OpsPerSec   float64          `json:"ops_per_sec"`
	P50         float64          `json:"p50_ms"`
	P95         float64          `json:"p95_ms"`
	P99         float64          `json:"p99_ms"`
	P999        float64          `json:"p999_ms"`
	Max         float64          `json:"max_ms"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	// ServerCPUPerOpUs is the server's CPU time per successful operation, in microseconds,
	// when its process id was given (--pid).
	ServerCPUPerOpUs float64 `json:"server_cpu_us_per_op,omitempty"`
	// ClientCPUPerOpUs is putallbench's own CPU time per successful operation (the client
	// library's cost, with the load generator's), in microseconds.
	ClientCPUPerOpUs float64 `json:"client_cpu_us_per_op,omitempty"`
	// ClientAllocsPerOp is the heap objects putallbench allocated per successful operation
	// (the client library's, with the load generator's): steadier than CPU on a busy machine.
	ClientAllocsPerOp float64 `json:"client_allocs_per_op,omitempty"`
}

// worker is one load goroutine's state; it is merged into the step's result at the end.
type worker struct {
	rng    *rand.Rand
	hist   *hdrhistogram.Histogram
	ok     int64
	keys   int64
	errors map[string]int64
}

func newWorker(seed uint64, id int) *worker {
	return &worker{
		rng:    rand.New(rand.NewPCG(seed, uint64(id))),
		hist:   hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3), // µs, up to a minute
		errors: make(map[string]int64),
	}
}

// workload builds operations: key names are made once, values are one shared random slice.
type workload struct {
	cfg   *config
	keys  []string
	value []byte
}

func newWorkload(cfg *config) *workload {
	w := &workload{cfg: cfg, keys: keyNames(cfg.keySpace, cfg.opKeys(), cfg.oneSlot), value: make([]byte, cfg.valueSize)}
	rng := rand.New(rand.NewPCG(cfg.seed, 0))
	for i := range w.value {
		w.value[i] = byte(rng.UintN(256))
	}
	return w
}

// one runs one operation for wk, timing it from start (the scheduled start in open loop).
func (w *workload) one(ctx context.Context, t target, wk *worker, buf []string, start time.Time) {
	n := w.cfg.opKeys()
	w.cfg.dist.choose(wk.rng, w.keys, buf[:n])
	opCtx, cancel := context.WithTimeout(ctx, w.cfg.timeout)
	var err error
	if w.cfg.readRatio > 0 && wk.rng.Float64() < w.cfg.readRatio {
		err = t.read(opCtx, buf[:n])
	} else {
		err = t.write(opCtx, buf[:n], w.value)
	}
	cancel()
	if err != nil && stepOver(ctx) {
		return // the step ended under this operation: not the target's error
	}
	_ = wk.hist.RecordValue(max(1, time.Since(start).Microseconds()))
	if err != nil {
		wk.errors[t.code(err)]++
		return
	}
	wk.ok++
	wk.keys += int64(n)
}

// stepOver reports whether the step's context has ended or passed its deadline (a deadline
// can pass a moment before the context reports it, and clients check deadlines themselves).
func stepOver(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || (ok && !time.Now().Before(dl))
}

// runStep runs conc workers for one step, closed loop (each worker issues its next operation
// when the last returns) or, with rate > 0, open loop (operations are scheduled every 1/rate
// and timed from their schedule).
func runStep(ctx context.Context, cfg *config, t target, conc int, rate float64, progress io.Writer) (stepResult, error) {
	w := newWorkload(cfg)
	limit := cfg.duration
	if cfg.requests > 0 {
		limit = 10 * time.Minute // a bound, in case the target stalls
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	var remaining atomic.Int64
	remaining.Store(int64(cfg.requests))
	take := func() bool { return cfg.requests == 0 || remaining.Add(-1) >= 0 }

	var schedule chan time.Time
	if rate > 0 {
		schedule = make(chan time.Time, 1<<16)
		go func() {
			defer close(schedule)
			interval := time.Duration(float64(time.Second) / rate)
			next := time.Now()
			tick := time.NewTicker(min(interval, time.Millisecond))
			defer tick.Stop()
			for {
				for now := time.Now(); !next.After(now); next = next.Add(interval) {
					if !take() {
						return
					}
					select {
					case schedule <- next:
					case <-ctx.Done():
						return
					}
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	workers := make([]*worker, conc)
	var done atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for i := range workers {
		wk := newWorker(cfg.seed, i+1)
		workers[i] = wk
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]string, cfg.opKeys())
			for !stepOver(ctx) {
				start := time.Now()
				if schedule != nil {
					var ok bool
					if start, ok = <-schedule; !ok {
						return
					}
				} else if !take() {
					return
				}
				w.one(ctx, t, wk, buf, start)
				done.Add(1)
			}
		}()
	}
	serverCPU := startCPUMeter(cfg.pids)
	clientCPU := startCPUMeter([]int{os.Getpid()})
	allocs := heapObjects()
	stopProgress := startProgress(progress, conc, rate, &done, began)
	wg.Wait()
	stopProgress()
	r := merge(workers, conc, rate, time.Since(began))
	if len(cfg.pids) > 0 {
		perOp, err := serverCPU(r.Ops)
		if err != nil {
			return r, fmt.Errorf("--pid %v: %v", cfg.pids, err)
		}
		r.ServerCPUPerOpUs = perOp
	}
	r.ClientCPUPerOpUs, _ = clientCPU(r.Ops) // best effort: /proc may be missing
	if r.Ops > 0 {
		r.ClientAllocsPerOp = float64(heapObjects()-allocs) / float64(r.Ops)
	}
	return r, nil
}

// heapObjects is the count of heap objects this process has allocated so far.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// startCPUMeter starts measuring the CPU time of the processes pids; the returned function
// gives the CPU time since then per operation, in microseconds, for ops operations.
func startCPUMeter(pids []int) func(ops int64) (float64, error) {
	before, errBefore := processesCPU(pids)
	return func(ops int64) (float64, error) {
		after, err := processesCPU(pids)
		if err = errors.Join(errBefore, err); err != nil || ops == 0 {
			return 0, err
		}
		return float64((after - before).Microseconds()) / float64(ops), nil
	}
}

// startProgress prints a progress line every second until the returned func is called.
func startProgress(out io.Writer, conc int, rate float64, done *atomic.Int64, began time.Time) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintln(out)
				return
			case <-t.C:
				n := done.Load()
				fmt.Fprintf(out, "\rconcurrency %d rate %.0f: %d ops, %.0f ops/s   ", conc, rate, n, float64(n)/time.Since(began).Seconds())
			}
		}
	}()
	return func() { close(stop); <-finished }
}

func merge(workers []*worker, conc int, rate float64, elapsed time.Duration) stepResult {
	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	r := stepResult{Concurrency: conc, TargetRate: rate, Seconds: elapsed.Seconds(), Errors: map[string]int64{}}
	for _, wk := range workers {
		all.Merge(wk.hist)
		r.Ops += wk.ok
		r.Keys += wk.keys
		for code, n := range wk.errors {
			r.Errors[code] += n
		}
	}
	ms := func(q float64) float64 { return float64(all.ValueAtQuantile(q)) / 1000 }
	r.P50, r.P95, r.P99, r.P999 = ms(50), ms(95), ms(99), ms(99.9)
	r.Max = float64(all.Max()) / 1000
	r.KeysPerSec = float64(r.Keys) / r.Seconds
	r.OpsPerSec = float64(r.Ops) / r.Seconds
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	return r
}

func printTable(out io.Writer, cfg *config, results []stepResult) {
	fmt.Fprintf(out, "target %s at %s, %d keys/op, %d-byte values\n", cfg.target, cfg.addr, cfg.opKeys(), cfg.valueSize)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\trate\tkeys/s\tops/s\tp50 ms\tp95 ms\tp99 ms\tp999 ms\tsrv CPU µs/op\tcli CPU µs/op\tcli allocs/op\terrors\t")
	for _, r := range results {
		rate := "closed"
		if r.TargetRate > 0 {
			rate = fmt.Sprintf("%.0f", r.TargetRate)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t\n",
			r.Concurrency, rate, r.KeysPerSec, r.OpsPerSec, r.P50, r.P95, r.P99, r.P999,
			cpuColumn(r.ServerCPUPerOpUs), cpuColumn(r.ClientCPUPerOpUs), cpuColumn(r.ClientAllocsPerOp), formatErrors(r.Errors))
	}
	_ = tw.Flush()
}

// cpuColumn formats a CPU time per operation, "-" when not measured.
func cpuColumn(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", us)
}

func formatErrors(errs map[string]int64) string {
	if len(errs) == 0 {
		return "-"
	}
	codes := make([]string, 0, len(errs))
	for c := range errs {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	s := ""
	for i, c := range codes {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%s=%d", c, errs[c])
	}
	return s
}
