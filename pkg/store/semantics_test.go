package store

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scripts under testdata/semantics state the store's contract as operations and the answers
// expected of them, in the manner of Pebble's data-driven tests. Each script runs against a
// Memory and against a Durable, which must answer alike. A script is a sequence of cases:
//
//	# a comment
//	command arg... [name=value...]
//	input line (batch only)
//	----
//	expected output
//	(a blank line ends the case)
//
// Commands:
//
//	open [shards=N] [max_bytes=N]   a fresh, empty engine (the script starts with shards=4, no quota)
//	put KEY VALUE [expect=N] [ttl=MS]   one write in an ATOMIC batch; expect=0 is create-only
//	delete KEY [expect=N]
//	batch atomic|best_effort        a batch of the put and delete lines that follow
//	get KEY...                      GetAll: the revision, then each key's value, version, expiry
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
					runScript(t, kind, file, *rewrite && kind == memoryKind)
				})
			}
		})
	}
}

// scriptCase is one command of a script with its input and expected output.
type scriptCase struct {
	line     int // of the command, 1-based
	cmd      string
	input    []string
	want     []string
	wantFrom int // index of the first expected line in the file's lines
}

// parseScript splits a script into its cases.
func parseScript(t *testing.T, file string, lines []string) []scriptCase {
	var cases []scriptCase
	for i := 0; i < len(lines); {
		if l := strings.TrimSpace(lines[i]); l == "" || strings.HasPrefix(l, "#") {
			i++
			continue
		}
		c := scriptCase{line: i + 1, cmd: lines[i]}
		for i++; i < len(lines) && lines[i] != "----"; i++ {
			c.input = append(c.input, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: %q has no ---- line", file, c.line, c.cmd)
		}
		i++
		c.wantFrom = i
		for ; i < len(lines) && lines[i] != ""; i++ {
			c.want = append(c.want, lines[i])
		}
		cases = append(cases, c)
	}
	return cases
}

func runScript(t *testing.T, kind engineKind, file string, rewrite bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	r := &scriptRunner{t: t, kind: kind, clock: &fakeClock{}}
	r.open(Options{Shards: 4})
	var out []string // the rewritten file
	next := 0
	for _, c := range parseScript(t, file, lines) {
		r.pos = fmt.Sprintf("%s:%d", file, c.line)
		got := r.run(c)
		if rewrite {
			out = append(append(out, lines[next:c.wantFrom]...), got...)
			next = c.wantFrom + len(c.want)
			continue
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", r.pos, c.cmd, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
	if rewrite {
		out = append(out, lines[next:]...)
		if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// scriptRunner runs a script's cases against one engine.
type scriptRunner struct {
	t     *testing.T
	kind  engineKind
	clock *fakeClock
	sub   *subject
	pos   string // file:line of the case running
}

func (r *scriptRunner) open(opts Options) {
	if r.sub != nil {
		r.sub.close()
	}
	opts.Now = r.clock.Now
	r.sub = openSubject(r.t, r.kind, opts)
}

// run runs one case and returns its output lines.
func (r *scriptRunner) run(c scriptCase) []string {
	args := r.words(c.cmd)
	name, args := args[0], args[1:]
	if name != "batch" && len(c.input) > 0 {
		r.fail("%s takes no input lines", name)
	}
	var text string
	switch name {
	case "open":
		opts := Options{Shards: 4}
		for _, a := range args {
			k, v := r.option(a)
			switch k {
			case "shards":
				opts.Shards = int(r.number(v))
			case "max_bytes":
				opts.MaxBytes = r.number(v)
			default:
				r.fail("open: unknown option %q", k)
			}
		}
		r.open(opts)
		text = "ok"
	case "put", "delete":
		text = r.apply(Atomic, []Write{r.write(c.cmd)})
	case "batch":
		text = r.batch(args, c.input)
	case "get":
		items := make([]Item, len(args))
		rev, err := r.sub.engine().GetAll(context.Background(), args, items)
		text = describeGet(args, rev, items, err)
	case "advance":
		r.needArgs(args, 1)
		r.clock.Advance(time.Duration(r.number(args[0])) * time.Millisecond)
		text = fmt.Sprintf("now=%d", r.clock.ms.Load())
	case "sweep":
		text = fmt.Sprintf("freed=%d", r.sub.memory().Sweep())
	case "stats":
		st := r.sub.engine().Stats()
		text = fmt.Sprintf("keys=%d revision=%d bytes=%d max_bytes=%d", st.Keys, st.Revision, st.Bytes, st.MaxBytes)
	case "refusals":
		text = fmt.Sprintf("quota_refusals=%d", r.sub.engine().Stats().QuotaRefusals)
	case "reopen":
		r.sub.reopen()
		text = "ok"
	case "snapshot":
		r.sub.snapshot()
		text = "ok"
	default:
		r.fail("unknown command %q", name)
	}
	return strings.Split(text, "\n")
}

// batch applies the writes of the input lines in the mode args name.
func (r *scriptRunner) batch(args, input []string) string {
	if len(args) == 0 {
		r.fail("batch: want a mode, atomic or best_effort")
	}
	modes := map[string]Mode{"atomic": Atomic, "best_effort": BestEffort}
	mode, ok := modes[args[0]]
	if !ok {
		r.fail("batch: unknown mode %q", args[0])
	}
	if len(args) > 1 {
		r.fail("batch: want only a mode, got %q", args[1:])
	}
	writes := make([]Write, len(input))
	for i, l := range input {
		writes[i] = r.write(l)
	}
	return r.apply(mode, writes)
}

func (r *scriptRunner) apply(mode Mode, writes []Write) string {
	results := make([]Result, len(writes))
	out, err := r.sub.engine().Apply(context.Background(), Batch{Mode: mode, Writes: writes}, results)
	return describeApply(writes, out, results, err)
}

// write parses "put KEY VALUE [expect=N] [ttl=MS]" or "delete KEY [expect=N]".
func (r *scriptRunner) write(line string) Write {
	args := r.words(line)
	w := Write{ExpectedVersion: AnyVersion}
	switch args[0] {
	case "put":
		r.needArgs(args, 3)
		w.Key, w.Value, args = args[1], []byte(args[2]), args[3:]
	case "delete":
		r.needArgs(args, 2)
		w.Key, w.Delete, args = args[1], true, args[2:]
	default:
		r.fail("want put or delete, got %q", args[0])
	}
	for _, a := range args {
		switch k, v := r.option(a); {
		case k == "expect":
			w.ExpectedVersion = r.number(v)
		case k == "ttl" && !w.Delete:
			w.ExpiresAtMs = r.clock.ms.Load() + r.number(v)
		default:
			r.fail("%s: unknown option %q", line, k)
		}
	}
	return w
}

// words splits a line at spaces; a word may be a Go-quoted string.
func (r *scriptRunner) words(line string) []string {
	var words []string
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimSpace(rest) {
		var w string
		if rest[0] == '"' {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				r.fail("bad quoted string in %q", line)
			}
			w, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			w, rest, _ = strings.Cut(rest, " ")
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		r.fail("empty command")
	}
	return words
}

func (r *scriptRunner) option(arg string) (name, value string) {
	name, value, ok := strings.Cut(arg, "=")
	if !ok {
		r.fail("want name=value, got %q", arg)
	}
	return name, value
}

func (r *scriptRunner) number(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		r.fail("want a number, got %q", s)
	}
	return n
}

func (r *scriptRunner) needArgs(args []string, n int) {
	if len(args) < n {
		r.fail("%q: want %d words", strings.Join(args, " "), n)
	}
}

func (r *scriptRunner) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s: %s", r.pos, fmt.Sprintf(format, args...))
}
