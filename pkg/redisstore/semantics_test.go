package redisstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/datadriven"
	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/pkg/store"
)

// The store's semantics scripts (pkg/store/testdata/semantics) run against this engine with
// every key of a script in one hash slot (the runner gives each the hash tag {semantics}):
// within one slot the engine keeps the whole contract, so it must answer exactly as the Memory
// engine does. What does not apply is said where it is skipped: the scripts' fake clock (the
// engine's clock is Redis's: TestTTL covers expiry), the quota (Redis's maxmemory bounds the
// data) and the gauges of resident keys and bytes (Redis keeps those).
var notApplicable = map[string]string{
	"ttl.txt":   "it drives a fake clock; expiry runs on Redis's clock here (TestTTL)",
	"quota.txt": "the engine has no quota; Redis's maxmemory bounds the data",
}

// semanticsTag is the hash tag that puts every key of the scripts in one slot.
const semanticsTag = "{semantics}"

func TestSemantics(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		files, err := filepath.Glob("../store/testdata/semantics/*.txt")
		if err != nil || len(files) == 0 {
			t.Fatalf("no scripts in ../store/testdata/semantics (%v)", err)
		}
		for _, file := range files {
			name := filepath.Base(file)
			t.Run(strings.TrimSuffix(name, ".txt"), func(t *testing.T) {
				if why, ok := notApplicable[name]; ok {
					t.Skipf("does not apply to the redis_cluster engine: %s", why)
				}
				r := &scriptRunner{t: t}
				r.open()
				defer r.close()
				datadriven.RunFile(t, file, false, r.run)
			})
		}
	})
}

// scriptRunner runs a script's cases against an Engine on the test cluster.
type scriptRunner struct {
	t *testing.T
	e *Engine
}

// open empties the scripts' slot and opens an engine.
func (r *scriptRunner) open() {
	r.close()
	r.e = openEngine(r.t, Options{ReplicasAck: 1})
	clearSlot(r.t, r.e, Slot(dataKey(semanticsTag)))
}

func (r *scriptRunner) close() {
	if r.e != nil {
		r.e.Close()
		r.e = nil
	}
}

func (r *scriptRunner) run(c *datadriven.Case) string {
	if c.Cmd != "batch" && len(c.Input) > 0 {
		c.Fatalf("%s takes no input lines", c.Cmd)
	}
	switch c.Cmd {
	case "open":
		if len(c.Args) > 0 {
			c.Fatalf("open: options (%v) do not apply to this engine", c.Args)
		}
		r.open()
		return "ok"
	case "put", "delete":
		return r.apply(store.Atomic, []store.Write{r.write(c, c.Line)})
	case "batch":
		if len(c.Args) != 1 || (c.Args[0] != "atomic" && c.Args[0] != "best_effort") {
			c.Fatalf("batch: want atomic or best_effort")
		}
		mode := store.Atomic
		if c.Args[0] == "best_effort" {
			mode = store.BestEffort
		}
		writes := make([]store.Write, len(c.Input))
		for i, l := range c.Input {
			writes[i] = r.write(c, l)
		}
		return r.apply(mode, writes)
	case "get":
		keys := make([]string, len(c.Args))
		for i, k := range c.Args {
			keys[i] = semanticsTag + k
		}
		items := make([]store.Item, len(keys))
		rev, err := r.e.GetAll(context.Background(), keys, items)
		if err != nil {
			return "error: " + err.Error()
		}
		text := fmt.Sprintf("rev=%d", rev)
		for i, it := range items {
			text += fmt.Sprintf("\n%s: %s", c.Args[i], it)
		}
		return text
	case "scan":
		return describeScan(c, r.e)
	case "reopen":
		e := openEngine(r.t, Options{ReplicasAck: 1})
		r.close()
		r.e = e
		return "ok"
	case "snapshot":
		return "ok" // Redis keeps the data; nothing to snapshot
	case "stats":
		c.Skip("Redis counts the resident keys and bytes, not the engine")
		return ""
	}
	c.Fatalf("%s does not apply to this engine", c.Cmd)
	return ""
}

// write parses "put KEY VALUE [expect=N]" or "delete KEY [expect=N]", the key in the scripts'
// slot.
func (r *scriptRunner) write(c *datadriven.Case, line string) store.Write {
	args := c.Words(line)
	w := store.Write{ExpectedVersion: store.AnyVersion}
	switch args[0] {
	case "put":
		c.NeedArgs(args, 3)
		w.Key, w.Value, args = semanticsTag+args[1], []byte(args[2]), args[3:]
	case "delete":
		c.NeedArgs(args, 2)
		w.Key, w.Delete, args = semanticsTag+args[1], true, args[2:]
	default:
		c.Fatalf("want put or delete, got %q", args[0])
	}
	for _, a := range args {
		k, v := c.Option(a)
		if k != "expect" {
			c.Fatalf("%s: option %q does not apply to this engine", line, k)
		}
		w.ExpectedVersion = c.Int(v)
	}
	return w
}

func (r *scriptRunner) apply(mode store.Mode, writes []store.Write) string {
	results := make([]store.Result, len(writes))
	out, err := r.e.Apply(context.Background(), store.Batch{Mode: mode, Writes: writes}, results)
	if d, ok := errors.AsType[*store.DuplicateKeyError](err); ok {
		return fmt.Sprintf("error: duplicate key %q", strings.TrimPrefix(d.Key, semanticsTag))
	}
	if err != nil {
		return "error: " + err.Error()
	}
	text := out.String()
	for i, res := range results {
		text += fmt.Sprintf("\n%s: %s", strings.TrimPrefix(writes[i].Key, semanticsTag), res)
	}
	return text
}

// openEngine opens an engine on the test cluster, closed when the test ends.
// withModule makes openEngine open engines that apply through the module's PUTALL.APPLY (the
// test cluster's nodes load it); eachApplier sets it for one of its runs.
var withModule bool

// eachApplier runs f twice, as subtests: through the apply script and through the module's
// PUTALL.APPLY, which must answer alike.
func eachApplier(t *testing.T, f func(t *testing.T)) {
	for _, module := range []bool{false, true} {
		name := "script"
		if module {
			name = "module"
		}
		t.Run(name, func(t *testing.T) {
			withModule = module
			defer func() { withModule = false }()
			f(t)
		})
	}
}

func openEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	opts.Addrs = rediscluster.Addrs(t)
	opts.Module = opts.Module || withModule
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// clearSlot deletes every key of slot (data and counter): the slot starts over at revision 0.
func clearSlot(t testing.TB, e *Engine, slot int) {
	t.Helper()
	ctx := context.Background()
	c := e.client
	counter := revisionKey(slot)
	for {
		keys, err := c.Do(ctx, c.B().ClusterGetkeysinslot().Slot(int64(slot)).Count(1000).Build().SetSlot(counter)).AsStrSlice()
		if err != nil {
			t.Fatalf("CLUSTER GETKEYSINSLOT %d: %v", slot, err)
		}
		if len(keys) == 0 {
			return
		}
		if err := c.Do(ctx, c.B().Del().Key(keys...).Build()).Error(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
}
