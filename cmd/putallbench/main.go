// Command putallbench is putallkv's load generator. It drives one target (putallkv over RPC,
// over the HTTP gateway, through the SDK's Batcher, or a Redis server) with a workload of
// batch writes and reads, in steps of concurrency or of target rate, and reports per step the
// keys/s, calls/s, latency percentiles and errors by code, as a table or as JSON.
//
// With --rate the load is open-loop: operations are scheduled at fixed intervals and their
// latency is measured from the scheduled start, so a slow server cannot hide its queueing
// (no coordinated omission).
//
// `putallbench serve` runs an empty KVService on Kitex, the framework's own ceiling for a
// request of the same shape; `putallbench compare A.json B.json...` prints --json reports side
// by side as ratios to the first; `putallbench plot --out F.png TRACE.csv` draws a batcher trace
// (batch sizes, targets, suggestions and the server's tokens over time); `putallbench load`
// times one bulk load through the Load stream or a loop of PutAll calls, or writes it as Redis
// protocol for `redis-cli --pipe` (script/bench-load.sh runs the three side by side).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is the whole workload of one run.
type config struct {
	target      string
	addr        string
	mode        string
	steps       []int     // concurrency per step
	rates       []float64 // target ops/s per step (open loop); empty = closed loop
	batch       int
	valueSize   int
	keySpace    int
	dist        keyChooser
	linger      time.Duration // batcher: kvclient.WithLinger; negative = the SDK's default
	inFlight    int           // batcher: kvclient.WithMaxInFlight (round trips); 0 = the SDK's default
	requests    int
	duration    time.Duration
	readRatio   float64
	pipeline    int
	coalesce    int
	seed        uint64
	jsonOut     bool
	timeout     time.Duration
	description string
	tracePath   string
	metricsURL  string
	pids        []int
	oneSlot     bool
	cpuProfile  string
	execTrace   string
	token       string
	caFile      string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return serve(ctx, args[1:], stderr)
		case "compare":
			return compare(args[1:], stdout, stderr)
		case "plot":
			return plotTrace(args[1:], stderr)
		case "load":
			return load(ctx, args[1:], stdout, stderr)
		}
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "putallbench: %v\n", err)
		return 2
	}
	t, err := newTarget(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "putallbench: %v\n", err)
		return 1
	}
	defer t.close()
	if cfg.cpuProfile != "" {
		stopProfile, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "putallbench: %v\n", err)
			return 1
		}
		defer stopProfile()
	}
	if cfg.execTrace != "" {
		stopTrace, err := startExecTrace(cfg.execTrace)
		if err != nil {
			fmt.Fprintf(stderr, "putallbench: %v\n", err)
			return 1
		}
		defer stopTrace()
	}
	var results []stepResult
	for i, conc := range cfg.steps {
		var rate float64
		if len(cfg.rates) > 0 {
			rate = cfg.rates[i]
		}
		r, err := runStep(ctx, cfg, t, conc, rate, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "putallbench: %v\n", err)
			return 1
		}
		results = append(results, r)
	}
	if cfg.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report{Target: cfg.target, Description: cfg.description, Batch: cfg.opKeys(),
			ValueSize: cfg.valueSize, Steps: results}); err != nil {
			fmt.Fprintf(stderr, "putallbench: %v\n", err)
			return 1
		}
		return 0
	}
	printTable(stdout, cfg, results)
	return 0
}

// startCPUProfile profiles this process into path until the returned function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// startExecTrace writes an execution trace of this process (go tool trace) to path until the
// returned function is called: where the client's goroutines wait, and for what.
func startExecTrace(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		trace.Stop()
		f.Close()
	}, nil
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("putallbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var steps, rates string
	var seed int64
	fs.StringVar(&c.target, "target", "rpc", "rpc | kitex (the generated Kitex client alone) | http | batcher | redis (go-redis) | rueidis")
	fs.StringVar(&c.addr, "addr", "", "target address HOST:PORT; rpc, batcher and rueidis take several, comma-separated (default: 127.0.0.1:8888 rpc/batcher, :8080 http, :6379 redis/rueidis)")
	fs.StringVar(&c.mode, "mode", "atomic", "putallkv write mode: atomic | best_effort")
	fs.StringVar(&steps, "steps", "50", "concurrency per step, comma-separated (e.g. 1,10,50,100)")
	fs.StringVar(&rates, "rate", "", "target operations/s per step, comma-separated (open loop); empty = closed loop")
	fs.IntVar(&c.batch, "batch", 16, "keys per operation (batcher: ignored, one key per Put)")
	fs.IntVar(&c.valueSize, "value-size", 64, "bytes per value")
	fs.IntVar(&c.keySpace, "keys", 100_000, "size of the key space")
	dist := fs.String("dist", "uniform", "key choice: uniform | zipf:S (Zipf with exponent S) | hot:X (a fraction X of operations carry one hot key)")
	fs.IntVar(&c.requests, "requests", 0, "operations per step (0 = run for --duration)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of a step when --requests is 0")
	fs.Float64Var(&c.readRatio, "read-ratio", 0, "fraction of operations that read (GetAll / MGET) instead of write")
	fs.IntVar(&c.pipeline, "pipeline", 1, "redis: commands per pipelined round trip")
	fs.IntVar(&c.coalesce, "coalesce", -1, "rpc: gather concurrent PutAll calls into PutAllMany round trips, at most this many in flight (kvclient.WithCoalescing); 0 = off; negative = the SDK's default")
	fs.Int64Var(&seed, "seed", 1, "seed of the key choice")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON instead of a table")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-operation timeout")
	fs.StringVar(&c.description, "describe", "", "free text copied into the report (e.g. the server's configuration)")
	fs.DurationVar(&c.linger, "linger", -1, "batcher: how long a key may wait for its batch to fill (kvclient.WithLinger); negative = the SDK's default")
	fs.IntVar(&c.inFlight, "in-flight", 0, "batcher: round trips in flight at once (kvclient.WithMaxInFlight); 0 = the SDK's default")
	fs.StringVar(&c.tracePath, "trace", "", "batcher: write a CSV of every batch sent (and of the server's tokens, with --metrics) to this file")
	fs.StringVar(&c.metricsURL, "metrics", "", "batcher: the server's /metrics URL, scraped for putallkv_limiter_tokens into the trace")
	pids := fs.String("pid", "", "the server's process id (Linux), or several comma-separated (a cluster's): report their CPU time per operation")
	fs.BoolVar(&c.oneSlot, "one-slot", false, "the keys of an operation share a Redis hash tag ({gN}), so they map to one hash slot (uniform keys only)")
	fs.StringVar(&c.token, "token", "", "rpc: bearer token sent with every call (kvclient.WithToken)")
	fs.StringVar(&c.caFile, "ca", "", "rpc: speak TLS, verifying the server with this CA `FILE` (kvclient.WithTLS)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of putallbench itself (the client side) to this file")
	fs.StringVar(&c.execTrace, "exectrace", "", "write an execution trace of putallbench itself (go tool trace) to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.seed = uint64(seed)
	var err error
	if c.steps, err = parseList(steps, strconv.Atoi); err != nil || len(c.steps) == 0 {
		return nil, fmt.Errorf("--steps: want comma-separated positive integers, got %q", steps)
	}
	if rates != "" {
		if c.rates, err = parseList(rates, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
			return nil, fmt.Errorf("--rate: %v", err)
		}
		if len(c.rates) == 1 {
			for len(c.rates) < len(c.steps) {
				c.rates = append(c.rates, c.rates[0])
			}
		}
		for len(c.steps) < len(c.rates) {
			c.steps = append(c.steps, c.steps[len(c.steps)-1])
		}
		if len(c.rates) != len(c.steps) {
			return nil, errors.New("--rate and --steps must have the same number of steps (or one of them one)")
		}
	}
	switch {
	case c.batch < 1 || c.valueSize < 0 || c.keySpace < c.batch*c.pipeline:
		return nil, errors.New("--batch must be positive, --value-size not negative, --keys at least --batch")
	case c.readRatio < 0 || c.readRatio > 1:
		return nil, errors.New("--read-ratio must be between 0 and 1")
	case c.requests < 0 || (c.requests == 0 && c.duration <= 0):
		return nil, errors.New("give a positive --requests or --duration")
	case c.pipeline < 1:
		return nil, errors.New("--pipeline must be at least 1")
	case c.mode != "atomic" && c.mode != "best_effort":
		return nil, fmt.Errorf("--mode must be atomic or best_effort, got %q", c.mode)
	}
	if *pids != "" {
		if c.pids, err = parseList(*pids, strconv.Atoi); err != nil {
			return nil, fmt.Errorf("--pid: %v", err)
		}
	}
	if c.dist, err = parseDist(*dist, c.keySpace); err != nil {
		return nil, err
	}
	_, uniform := c.dist.(uniformKeys)
	if !uniform && c.keySpace < 2*c.opKeys() {
		return nil, errors.New("--dist zipf and hot need --keys at least twice the keys of one operation")
	}
	if c.oneSlot {
		if !uniform {
			return nil, errors.New("--one-slot works with --dist uniform only")
		}
		c.dist = oneSlotKeys{}
	}
	if c.addr == "" {
		c.addr = map[string]string{"rpc": "127.0.0.1:8888", "kitex": "127.0.0.1:8888", "batcher": "127.0.0.1:8888", "http": "127.0.0.1:8080", "redis": "127.0.0.1:6379", "rueidis": "127.0.0.1:6379"}[c.target]
	}
	return c, nil
}

func parseList[T int | float64](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		v, err := parse(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad value %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// addrs is --addr as a list: the SDK targets (rpc, batcher) balance over several nodes, and
// rueidis takes several seed nodes of a cluster.
func (c *config) addrs() []string {
	var out []string
	for _, a := range strings.Split(c.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// opKeys is the number of keys one operation carries.
func (c *config) opKeys() int {
	switch c.target {
	case "batcher":
		return 1
	case "redis":
		return c.batch * c.pipeline
	}
	return c.batch
}
