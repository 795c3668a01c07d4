package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/putallkv/putallkv/internal/datadriven"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/wal"
)

// The scripts under testdata/semantics state what the service adds to the store's contract
// (docs/api.md, Semantics): validation, modes as the API reports them, idempotency, PutAllMany,
// admission and the quota as refusals. They are in the format of internal/datadriven, call the
// kv.KVService methods with the generated request types, and run against a service over a
// Memory and over a Durable in a temporary directory, which must answer alike.
//
// Commands:
//
//	open [max_key=N] [max_value=N] [max_entries=N] [window=MS] [idempotency_bytes=N] [max_bytes=N]
//	        a fresh service over a fresh, empty store; a script starts with max_key=16
//	        max_value=32 max_entries=4 window=60000, idempotency records bounded by the
//	        default, and no quota (max_bytes=0)
//	put KEY VALUE [expect=N] [ttl=MS] [request_id=ID]
//	delete KEY [expect=N] [request_id=ID]
//	get KEY
//	getall KEY...
//	putall [atomic|best_effort|mode=N] [request_id=ID]     then an entry a line: KEY VALUE [expect=N] [ttl=MS]
//	deleteall [atomic|best_effort|mode=N] [request_id=ID]  then an entry a line: KEY [expect=N]
//	        (no mode sends the IDL's default, ATOMIC)
//	putallmany   then its calls: "call [mode] [request_id=ID]" and that call's entry lines, or
//	        "call missing" for an absent call
//	advance MS   move the clock (it starts at 0, the Unix epoch) forward
//	admission rate=R burst=N max_wait=MS max_chunk=N   SetAdmission (rate=0: unlimited)
//	restart      the Durable is closed, recovered from its directory and given a new service
//	             (with the admission settings, its bucket full); over a Memory, nothing happens
//	             (what a restart must keep, the Memory keeps)
//	snapshot     the Durable takes a snapshot; over a Memory, nothing happens
//	stats        the store's keys, revision and bytes; the idempotency records and evictions
//
// A write answers its code, then its fields (replayed only when set; suggested=N, the
// suggested_batch, only while admission is limited: unlimited, it is always max_entries), then
// each per-key result as "KEY: CODE version=N". A refusal answers "CODE: sentence" (with
// retry_after_ms when set) and each key its failed lists. Keys are printed bare, or Go-quoted
// when empty or not a plain word.
//
// PutAllMany answers each call's outcome, "call I: ...", its per-key lines indented. Nothing
// orders the calls (over a Durable they run side by side), so a revision or version that a call
// of this request took is printed as "new"; the runner checks that every call that applied
// took a revision of its own. A script's calls name disjoint keys.
//
// With -rewrite the scripts' expected outputs are replaced by what the service over a Memory
// answers (review the diff before committing it).
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata/semantics scripts")

func TestSemantics(t *testing.T) {
	files, err := filepath.Glob("testdata/semantics/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/semantics (%v)", err)
	}
	for _, durable := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "durable"}[durable]
		t.Run(name, func(t *testing.T) {
			for _, file := range files {
				t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
					r := &scriptRunner{t: t, durable: durable, clock: &testClock{}}
					r.open(defaultScriptOptions())
					t.Cleanup(r.close)
					datadriven.RunFile(t, file, *rewrite && !durable, r.run)
				})
			}
		})
	}
}

// scriptOptions are what open configures.
type scriptOptions struct {
	store   store.Options
	service Options
}

func defaultScriptOptions() scriptOptions {
	return scriptOptions{
		store:   store.Options{Shards: 4},
		service: Options{Limits: Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxBatchEntries: 4}, IdempotencyWindow: time.Minute},
	}
}

// scriptRunner runs a script's cases against one service.
type scriptRunner struct {
	t       *testing.T
	durable bool
	clock   *testClock
	opts    scriptOptions
	dir     string         // the Durable's data directory
	engine  store.Engine   // the service's store
	dur     *store.Durable // the same store, when durable
	svc     *Service
}

// open starts a service with opts over a fresh, empty store.
func (r *scriptRunner) open(opts scriptOptions) {
	r.close()
	opts.store.Now, opts.service.Now = r.clock.now, r.clock.now
	r.opts = opts
	if r.durable {
		r.dir = r.t.TempDir()
	}
	r.start()
}

// start opens the store (a Durable recovers what its directory holds) and a service over it.
func (r *scriptRunner) start() {
	r.t.Helper()
	opts := r.opts.service
	if !r.durable {
		m, err := store.NewMemory(r.opts.store)
		if err != nil {
			r.t.Fatal(err)
		}
		r.engine = m
	} else {
		rec := NewRecovery()
		d, err := store.OpenDurable(store.DurableOptions{Options: r.opts.store, Dir: r.dir,
			WAL:          wal.Options{Sync: wal.SyncNone},
			Recovered:    rec.Add,
			SnapshotTags: func() [][]byte { return r.svc.SnapshotTags() }})
		if err != nil {
			r.t.Fatal(err)
		}
		r.engine, r.dur, opts.Recovery = d, d, rec
	}
	svc, err := New(r.engine, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.svc = svc
}

func (r *scriptRunner) close() {
	if r.engine != nil {
		if err := r.engine.Close(); err != nil {
			r.t.Errorf("close: %v", err)
		}
	}
	r.engine, r.dur, r.svc = nil, nil, nil
}

// run runs one case and returns its output.
func (r *scriptRunner) run(c *datadriven.Case) string {
	switch c.Cmd {
	case "putall", "deleteall", "putallmany":
	default:
		if len(c.Input) > 0 {
			c.Fatalf("%s takes no input lines", c.Cmd)
		}
	}
	ctx := context.Background()
	switch c.Cmd {
	case "open":
		r.open(r.openOptions(c))
		return "ok"
	case "put":
		return r.put(ctx, c)
	case "delete":
		return r.delete(ctx, c)
	case "get":
		c.NeedArgs(c.Args, 1)
		resp, err := r.svc.Get(ctx, &kv.GetRequest{Key: c.Args[0]})
		if err != nil {
			return describeError(err, exact)
		}
		return describeItem(resp.Item)
	case "getall":
		return r.getAll(ctx, c)
	case "putall":
		resp, err := r.svc.PutAll(ctx, putAllRequest(c, c.Args, c.Input))
		if err != nil {
			return describeError(err, exact)
		}
		return r.describeBatch(resp, exact)
	case "deleteall":
		return r.deleteAll(ctx, c)
	case "putallmany":
		return r.putAllMany(ctx, c)
	case "advance":
		c.NeedArgs(c.Args, 1)
		r.clock.advance(time.Duration(c.Int(c.Args[0])) * time.Millisecond)
		return fmt.Sprintf("now=%d", r.clock.now().UnixMilli())
	case "admission":
		r.admission(c)
		return "ok"
	case "restart":
		if r.durable {
			r.close()
			r.start()
		}
		return "ok"
	case "snapshot":
		if r.dur != nil {
			if err := r.dur.Snapshot(ctx); err != nil {
				c.Fatalf("snapshot: %v", err)
			}
		}
		return "ok"
	case "stats":
		st := r.engine.Stats()
		records, _, evicted := r.svc.idem.stats()
		return fmt.Sprintf("keys=%d revision=%d bytes=%d idempotency_records=%d evictions=%d",
			st.Keys, st.Revision, st.Bytes, records, evicted)
	}
	c.Fatalf("unknown command %q", c.Cmd)
	return ""
}

func (r *scriptRunner) put(ctx context.Context, c *datadriven.Case) string {
	c.NeedArgs(c.Args, 2)
	o := options(c, c.Args[2:], "expect", "ttl", "request_id")
	resp, err := r.svc.Put(ctx, &kv.PutRequest{Key: c.Args[0], Value: []byte(c.Args[1]),
		ExpectedVersion: o.int(c, "expect"), TtlMs: o.int(c, "ttl"), RequestId: o.str("request_id")})
	if err != nil {
		return describeError(err, exact)
	}
	return r.fields(fmt.Sprintf("OK version=%d", resp.Version), resp.Created, resp.Replayed, 0, resp.SuggestedBatch)
}

func (r *scriptRunner) delete(ctx context.Context, c *datadriven.Case) string {
	c.NeedArgs(c.Args, 1)
	o := options(c, c.Args[1:], "expect", "request_id")
	resp, err := r.svc.Delete(ctx, &kv.DeleteRequest{Key: c.Args[0],
		ExpectedVersion: o.int(c, "expect"), RequestId: o.str("request_id")})
	if err != nil {
		return describeError(err, exact)
	}
	return r.fields(fmt.Sprintf("OK revision=%d", resp.Revision), false, resp.Replayed, 0, resp.SuggestedBatch)
}

func (r *scriptRunner) getAll(ctx context.Context, c *datadriven.Case) string {
	resp, err := r.svc.GetAll(ctx, &kv.GetAllRequest{Keys: c.Args})
	if err != nil {
		return describeError(err, exact)
	}
	lines := []string{fmt.Sprintf("revision=%d", resp.Revision)}
	for _, it := range resp.Items {
		lines = append(lines, describeItem(it))
	}
	return strings.Join(lines, "\n")
}

func (r *scriptRunner) deleteAll(ctx context.Context, c *datadriven.Case) string {
	mode, id := callHeader(c, c.Args)
	req := &kv.DeleteAllRequest{Mode: mode, RequestId: id, Entries: make([]*kv.DeleteEntry, len(c.Input))}
	for i, l := range c.Input {
		w := c.Words(l)
		o := options(c, w[1:], "expect")
		req.Entries[i] = &kv.DeleteEntry{Key: w[0], ExpectedVersion: o.int(c, "expect")}
	}
	resp, err := r.svc.DeleteAll(ctx, req)
	if err != nil {
		return describeError(err, exact)
	}
	return r.describeBatch(resp, exact)
}

// admission sets write admission; a restart keeps the settings (the new service's bucket
// starts full).
func (r *scriptRunner) admission(c *datadriven.Case) {
	o := options(c, c.Args, "rate", "burst", "max_wait", "max_chunk")
	a := AdmissionSettings{Rate: float64(o.num(c, "rate")), Burst: int(o.num(c, "burst")),
		MaxWait: time.Duration(o.num(c, "max_wait")) * time.Millisecond, MaxChunk: int(o.num(c, "max_chunk"))}
	r.opts.service.Admission = a
	r.svc.SetAdmission(a)
}

func (r *scriptRunner) openOptions(c *datadriven.Case) scriptOptions {
	opts := defaultScriptOptions()
	o := options(c, c.Args, "max_key", "max_value", "max_entries", "window", "idempotency_bytes", "max_bytes")
	l := &opts.service.Limits
	limits := map[string]*int{"max_key": &l.MaxKeyBytes, "max_value": &l.MaxValueBytes, "max_entries": &l.MaxBatchEntries}
	for name, field := range limits {
		if v := o.int(c, name); v != nil {
			*field = int(*v)
		}
	}
	if v := o.int(c, "window"); v != nil {
		opts.service.IdempotencyWindow = time.Duration(*v) * time.Millisecond
	}
	if v := o.int(c, "idempotency_bytes"); v != nil {
		opts.service.IdempotencyMaxBytes = *v
	}
	if v := o.int(c, "max_bytes"); v != nil {
		opts.store.MaxBytes = *v
	}
	return opts
}

// putAllRequest builds a PutAll from its header words and its entry lines.
func putAllRequest(c *datadriven.Case, header, lines []string) *kv.PutAllRequest {
	mode, id := callHeader(c, header)
	req := &kv.PutAllRequest{Mode: mode, RequestId: id, Entries: make([]*kv.Entry, len(lines))}
	for i, l := range lines {
		w := c.Words(l)
		c.NeedArgs(w, 2)
		o := options(c, w[2:], "expect", "ttl")
		req.Entries[i] = &kv.Entry{Key: w[0], Value: []byte(w[1]),
			ExpectedVersion: o.int(c, "expect"), TtlMs: o.int(c, "ttl")}
	}
	return req
}

// callHeader reads a write call's mode (atomic, best_effort or mode=N; none leaves the IDL's
// default, ATOMIC) and request_id.
func callHeader(c *datadriven.Case, words []string) (kv.WriteMode, *string) {
	mode := kv.WriteMode_ATOMIC
	if len(words) > 0 && !strings.Contains(words[0], "=") {
		modes := map[string]kv.WriteMode{"atomic": kv.WriteMode_ATOMIC, "best_effort": kv.WriteMode_BEST_EFFORT}
		m, ok := modes[words[0]]
		if !ok {
			c.Fatalf("unknown mode %q", words[0])
		}
		mode, words = m, words[1:]
	}
	o := options(c, words, "mode", "request_id")
	if v := o.int(c, "mode"); v != nil {
		mode = kv.WriteMode(*v)
	}
	return mode, o.str("request_id")
}

// putAllMany sends the calls of the case's input and describes each outcome.
func (r *scriptRunner) putAllMany(ctx context.Context, c *datadriven.Case) string {
	req := &kv.PutAllManyRequest{Calls: calls(c)}
	before := r.engine.Stats().Revision
	resp, err := r.svc.PutAllMany(ctx, req)
	if err != nil {
		return describeError(err, exact)
	}
	v := manySince(before)
	taken := map[int64]int{} // revision → the call that took it
	lines := make([]string, len(resp.Outcomes))
	for i, o := range resp.Outcomes {
		var text string
		switch {
		case o.Error != nil:
			text = describeError(o.Error, v)
		case o.Response != nil:
			if rev := o.Response.Revision; rev > before {
				if j, ok := taken[rev]; ok {
					c.Fatalf("calls %d and %d share revision %d", j, i, rev)
				}
				taken[rev] = i
			}
			text = r.describeBatch(o.Response, v)
		default:
			text = "neither a response nor an error"
		}
		lines[i] = fmt.Sprintf("call %d: %s", i, strings.ReplaceAll(text, "\n", "\n  "))
	}
	return strings.Join(lines, "\n")
}

// calls parses a PutAllMany's input: a "call [mode] [request_id=ID]" line starts each call
// and its entry lines follow; "call missing" is an absent call. (A key named call is quoted.)
func calls(c *datadriven.Case) []*kv.PutAllRequest {
	isCall := func(line string) bool { return line == "call" || strings.HasPrefix(line, "call ") }
	var calls []*kv.PutAllRequest
	for i := 0; i < len(c.Input); {
		if !isCall(c.Input[i]) {
			c.Fatalf("want a call line, got %q", c.Input[i])
		}
		header := c.Words(c.Input[i])[1:]
		var entries []string
		for i++; i < len(c.Input) && !isCall(c.Input[i]); i++ {
			entries = append(entries, c.Input[i])
		}
		if len(header) == 1 && header[0] == "missing" {
			if len(entries) > 0 {
				c.Fatalf("a missing call has no entries")
			}
			calls = append(calls, nil)
			continue
		}
		calls = append(calls, putAllRequest(c, header, entries))
	}
	return calls
}

// view is how revisions and versions are printed: exactly, or, for the calls of a PutAllMany,
// those after before (which its calls took in some order) as "new".
type view struct {
	many   bool
	before int64
}

// exact prints revisions as they are.
var exact = view{}

// manySince is the view of a PutAllMany sent when the store's revision was before.
func manySince(before int64) view { return view{many: true, before: before} }

func (v view) rev(n int64) string {
	if v.many && n > v.before {
		return "new"
	}
	return strconv.FormatInt(n, 10)
}

// describeBatch describes a PutAll's or DeleteAll's response. In a PutAllMany it leaves
// suggested_batch out: that depends on the order in which the calls took tokens.
func (r *scriptRunner) describeBatch(resp batchResults, v view) string {
	var replayed bool
	var suggested int32
	switch b := resp.(type) {
	case *kv.PutAllResponse:
		replayed, suggested = b.Replayed, b.SuggestedBatch
	case *kv.DeleteAllResponse:
		replayed, suggested = b.Replayed, b.SuggestedBatch
	}
	if v.many {
		suggested = -1
	}
	head := fmt.Sprintf("OK revision=%s applied=%d", v.rev(resp.GetRevision()), resp.GetApplied())
	lines := []string{r.fields(head, false, replayed, resp.GetRetryAfterMs(), suggested)}
	for _, st := range resp.GetResults() {
		lines = append(lines, describeStatus(st, v))
	}
	return strings.Join(lines, "\n")
}

// fields appends a write response's flags to its first line; suggested < 0 leaves
// suggested_batch out.
func (r *scriptRunner) fields(head string, created, replayed bool, retryAfterMs int64, suggested int32) string {
	if created {
		head += " created"
	}
	if replayed {
		head += " replayed"
	}
	if retryAfterMs != 0 {
		head += fmt.Sprintf(" retry_after_ms=%d", retryAfterMs)
	}
	if suggested >= 0 && !r.svc.bucket.Unlimited() {
		head += fmt.Sprintf(" suggested=%d", suggested)
	}
	return head
}

// describeError describes a refusal: its code, retry_after_ms when set, its sentence, then
// each key its failed lists.
func describeError(err error, v view) string {
	ke, ok := errors.AsType[*kv.KVError](err)
	if !ok {
		return "not a KVError: " + err.Error()
	}
	head := ke.Code.String()
	if ke.RetryAfterMs != 0 {
		head += fmt.Sprintf(" retry_after_ms=%d", ke.RetryAfterMs)
	}
	lines := []string{head + ": " + ke.Message}
	for _, st := range ke.Failed {
		lines = append(lines, describeStatus(st, v))
	}
	return strings.Join(lines, "\n")
}

func describeStatus(st *kv.KeyStatus, v view) string {
	return fmt.Sprintf("%s: %s version=%s", word(st.Key), st.Code, v.rev(st.Version))
}

func describeItem(it *kv.Item) string {
	if !it.Found {
		return word(it.Key) + ": absent"
	}
	text := fmt.Sprintf("%s: %q version=%d", word(it.Key), it.Value, it.Version)
	if it.ExpiresAtMs != 0 {
		text += fmt.Sprintf(" expires=%d", it.ExpiresAtMs)
	}
	return text
}

// word prints s bare when it reads back as itself, else Go-quoted.
func word(s string) string {
	plain := s != "" && utf8.ValidString(s) && !strings.HasPrefix(s, `"`) &&
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) < 0
	if plain {
		return s
	}
	return strconv.Quote(s)
}

// scriptOpts are a line's name=value words.
type scriptOpts map[string]string

// options reads words as name=value options, each one of names.
func options(c *datadriven.Case, words []string, names ...string) scriptOpts {
	o := scriptOpts{}
	for _, w := range words {
		k, v := c.Option(w)
		if !slices.Contains(names, k) {
			c.Fatalf("unknown option %q (want one of %s)", k, strings.Join(names, ", "))
		}
		o[k] = v
	}
	return o
}

// int returns the option name as a number, or nil when it is not given.
func (o scriptOpts) int(c *datadriven.Case, name string) *int64 {
	v, ok := o[name]
	if !ok {
		return nil
	}
	return new(c.Int(v))
}

// num returns the option name as a number, 0 when it is not given.
func (o scriptOpts) num(c *datadriven.Case, name string) int64 {
	if v := o.int(c, name); v != nil {
		return *v
	}
	return 0
}

// str returns the option name, or nil when it is not given.
func (o scriptOpts) str(name string) *string {
	v, ok := o[name]
	if !ok {
		return nil
	}
	return &v
}
