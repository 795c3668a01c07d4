package store

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/datadriven"
)

// The scripts under testdata/semantics state the store's contract as operations and the answers
// expected of them, in the format of internal/datadriven. Each script runs against a Memory and
// against a Durable, which must answer alike.
//
// Commands:
//
//	open [shards=N] [max_bytes=N]   a fresh, empty engine (the script starts with shards=4, no quota)
//	put KEY VALUE [expect=N] [ttl=MS]   one write in an ATOMIC batch; expect=0 is create-only
//	delete KEY [expect=N]
//	batch atomic|best_effort        a batch of the put and delete lines that follow
//	get KEY...                      GetAll: the revision, then each key's value, version, expiry
//	scan [PREFIX] [limit=N] [bytes=N] [keys_only]   every page of a Scan: the items by key
//	advance MS                      move the fake clock (it starts at 0) forward
//	sweep                           free the expired keys; how many
//	stats                           the engine's gauges: keys (resident, expired ones too), revision, bytes
//	refusals                        the batches refused for the quota since the engine opened
//	reopen                          restart (a Durable recovers from its directory; Memory: no-op)
//	snapshot                        take a snapshot (Durable; Memory: no-op)
//
// Keys and values are words or Go-quoted strings. With -rewrite the scripts' expected outputs are
// replaced by what the Memory engine answers (review the diff before committing it).
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata/semantics scripts")

func TestSemantics(t *testing.T) {
	files, err := filepath.Glob("testdata/semantics/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/semantics (%v)", err)
	}
	for _, kind := range []engineKind{memoryKind, durableKind} {
		t.Run(kind.name, func(t *testing.T) {
			for _, file := range files {
				t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
					r := &scriptRunner{t: t, kind: kind, clock: &fakeClock{}}
					r.open(Options{Shards: 4})
					datadriven.RunFile(t, file, *rewrite && kind == memoryKind, r.run)
				})
			}
		})
	}
}

// scriptRunner runs a script's cases against one engine.
type scriptRunner struct {
	t     *testing.T
	kind  engineKind
	clock *fakeClock
	sub   *subject
}

func (r *scriptRunner) open(opts Options) {
	if r.sub != nil {
		r.sub.close()
	}
	opts.Now = r.clock.Now
	r.sub = openSubject(r.t, r.kind, opts)
}

// run runs one case and returns its output.
func (r *scriptRunner) run(c *datadriven.Case) string {
	if c.Cmd != "batch" && len(c.Input) > 0 {
		c.Fatalf("%s takes no input lines", c.Cmd)
	}
	args := c.Args
	switch c.Cmd {
	case "open":
		opts := Options{Shards: 4}
		for _, a := range args {
			k, v := c.Option(a)
			switch k {
			case "shards":
				opts.Shards = int(c.Int(v))
			case "max_bytes":
				opts.MaxBytes = c.Int(v)
			default:
				c.Fatalf("open: unknown option %q", k)
			}
		}
		r.open(opts)
		return "ok"
	case "put", "delete":
		return r.apply(Atomic, []Write{r.write(c, c.Line)})
	case "batch":
		return r.batch(c)
	case "get":
		items := make([]Item, len(args))
		rev, err := r.sub.engine().GetAll(context.Background(), args, items)
		return describeGet(args, rev, items, err)
	case "scan":
		return describeScan(c, r.sub.engine())
	case "advance":
		c.NeedArgs(args, 1)
		r.clock.Advance(time.Duration(c.Int(args[0])) * time.Millisecond)
		return fmt.Sprintf("now=%d", r.clock.ms.Load())
	case "sweep":
		return fmt.Sprintf("freed=%d", r.sub.memory().Sweep())
	case "stats":
		st := r.sub.engine().Stats()
		return fmt.Sprintf("keys=%d revision=%d bytes=%d max_bytes=%d", st.Keys, st.Revision, st.Bytes, st.MaxBytes)
	case "refusals":
		return fmt.Sprintf("quota_refusals=%d", r.sub.engine().Stats().QuotaRefusals)
	case "reopen":
		r.sub.reopen()
		return "ok"
	case "snapshot":
		r.sub.snapshot()
		return "ok"
	}
	c.Fatalf("unknown command %q", c.Cmd)
	return ""
}

// batch applies the writes of the case's input lines in the mode its argument names.
func (r *scriptRunner) batch(c *datadriven.Case) string {
	if len(c.Args) != 1 {
		c.Fatalf("batch: want one mode, atomic or best_effort")
	}
	modes := map[string]Mode{"atomic": Atomic, "best_effort": BestEffort}
	mode, ok := modes[c.Args[0]]
	if !ok {
		c.Fatalf("batch: unknown mode %q", c.Args[0])
	}
	writes := make([]Write, len(c.Input))
	for i, l := range c.Input {
		writes[i] = r.write(c, l)
	}
	return r.apply(mode, writes)
}

func (r *scriptRunner) apply(mode Mode, writes []Write) string {
	results := make([]Result, len(writes))
	out, err := r.sub.engine().Apply(context.Background(), Batch{Mode: mode, Writes: writes}, results)
	return describeApply(writes, out, results, err)
}

// write parses "put KEY VALUE [expect=N] [ttl=MS]" or "delete KEY [expect=N]".
func (r *scriptRunner) write(c *datadriven.Case, line string) Write {
	args := c.Words(line)
	w := Write{ExpectedVersion: AnyVersion}
	switch args[0] {
	case "put":
		c.NeedArgs(args, 3)
		w.Key, w.Value, args = args[1], []byte(args[2]), args[3:]
	case "delete":
		c.NeedArgs(args, 2)
		w.Key, w.Delete, args = args[1], true, args[2:]
	default:
		c.Fatalf("want put or delete, got %q", args[0])
	}
	for _, a := range args {
		switch k, v := c.Option(a); {
		case k == "expect":
			w.ExpectedVersion = c.Int(v)
		case k == "ttl" && !w.Delete:
			w.ExpiresAtMs = r.clock.ms.Load() + c.Int(v)
		default:
			c.Fatalf("%s: unknown option %q", line, k)
		}
	}
	return w
}
