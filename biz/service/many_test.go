package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// manyLimit is the MaxBatchEntries of the PutAllMany tests: room for mixedCalls' six calls.
const manyLimit = 8

// outcomeResponse fails the test unless outcome i of resp is a success, and returns it.
func outcomeResponse(t *testing.T, resp *kv.PutAllManyResponse, i int) *kv.PutAllResponse {
	t.Helper()
	o := resp.Outcomes[i]
	if o == nil || !o.IsSetResponse() || o.IsSetError() {
		t.Fatalf("outcome %d = %v; want a response and no error", i, o)
	}
	return o.Response
}

// outcomeError fails the test unless outcome i of resp is an error with code, and returns it.
func outcomeError(t *testing.T, resp *kv.PutAllManyResponse, i int, code kv.ErrorCode) *kv.KVError {
	t.Helper()
	o := resp.Outcomes[i]
	if o == nil || !o.IsSetError() || o.IsSetResponse() {
		t.Fatalf("outcome %d = %v; want an error %v and no response", i, o, code)
	}
	return wantCode(t, o.Error, code)
}

// readKeys reads keys through the service as key -> "value@version", leaving absent keys out.
func readKeys(t *testing.T, s *Service, keys ...string) map[string]string {
	t.Helper()
	got, err := s.GetAll(context.Background(), &kv.GetAllRequest{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, it := range got.Items {
		if it.Found {
			out[it.Key] = fmt.Sprintf("%s@%d", it.Value, it.Version)
		}
	}
	return out
}

// mixedCalls are the calls of a PutAllMany with one outcome of each kind, to be sent once "x"
// holds "old" at revision 1 (see preWrite) and nothing else is written.
func mixedCalls() []*kv.PutAllRequest {
	return []*kv.PutAllRequest{
		// 0: unconditional ATOMIC, succeeds.
		{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}, RequestId: new("many-0")},
		// 1: ATOMIC whose precondition on x fails: nothing of it, c included, is written.
		{Entries: []*kv.Entry{entry("c", "1"), {Key: "x", Value: []byte("2"), ExpectedVersion: new(int64(5))}}},
		// 2: missing.
		nil,
		// 3: invalid on its own: an empty key.
		{Entries: []*kv.Entry{entry("d", "1"), entry("", "1")}},
		// 4: invalid on its own: a repeated key.
		{Entries: []*kv.Entry{entry("e", "1"), entry("e", "2")}},
		// 5: BEST_EFFORT, x refused (create-only), f and g written.
		{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{
			entry("f", "1"), {Key: "x", Value: []byte("3"), ExpectedVersion: new(int64(0))}, entry("g", "1")}},
	}
}

var mixedKeys = []string{"a", "b", "c", "d", "e", "f", "g", "x"}

func preWrite(t *testing.T, s *Service) {
	t.Helper()
	resp, err := s.PutAll(context.Background(), &kv.PutAllRequest{Entries: []*kv.Entry{entry("x", "old")}})
	if err != nil || resp.Revision != 1 {
		t.Fatalf("pre-write = %+v, %v; want revision 1", resp, err)
	}
}

// checkMixed checks resp, the answer to mixedCalls, and what the store holds after it. It
// returns what the store holds.
func checkMixed(t *testing.T, s *Service, resp *kv.PutAllManyResponse) map[string]string {
	t.Helper()
	if n := len(resp.Outcomes); n != 6 {
		t.Fatalf("%d outcomes for 6 calls", n)
	}
	for i, o := range resp.Outcomes {
		if o == nil || o.IsSetResponse() == o.IsSetError() {
			t.Fatalf("outcome %d = %v; want exactly one of response and error", i, o)
		}
	}

	r0 := outcomeResponse(t, resp, 0)
	if r0.Applied != 2 || r0.Replayed || r0.Results != nil {
		t.Errorf("call 0 = %+v; want 2 applied, not replayed, no results", r0)
	}

	e1 := outcomeError(t, resp, 1, kv.ErrorCode_VERSION_MISMATCH)
	if len(e1.Failed) != 1 || e1.Failed[0].Key != "x" || e1.Failed[0].Code != kv.ErrorCode_VERSION_MISMATCH || e1.Failed[0].Version != 1 {
		t.Errorf("call 1 failed = %v; want x VERSION_MISMATCH at version 1", e1.Failed)
	}

	if e2 := outcomeError(t, resp, 2, kv.ErrorCode_INVALID_ARGUMENT); !strings.Contains(e2.Message, "missing") {
		t.Errorf("call 2 message %q does not say the call is missing", e2.Message)
	}
	if e3 := outcomeError(t, resp, 3, kv.ErrorCode_INVALID_ARGUMENT); !strings.Contains(e3.Message, "entries[1]") ||
		len(e3.Failed) != 1 || e3.Failed[0].Key != "" {
		t.Errorf("call 3 = %v; want entries[1], the empty key, named", e3)
	}
	if e4 := outcomeError(t, resp, 4, kv.ErrorCode_INVALID_ARGUMENT); !strings.Contains(e4.Message, "more than once") ||
		len(e4.Failed) != 1 || e4.Failed[0].Key != "e" {
		t.Errorf("call 4 = %v; want the repeated key e named", e4)
	}

	r5 := outcomeResponse(t, resp, 5)
	if r5.Applied != 2 || len(r5.Results) != 3 {
		t.Fatalf("call 5 = %+v; want 2 applied and 3 results", r5)
	}
	for i, want := range []kv.KeyStatus{
		{Key: "f", Code: kv.ErrorCode_OK, Version: r5.Revision},
		{Key: "x", Code: kv.ErrorCode_ALREADY_EXISTS, Version: 1},
		{Key: "g", Code: kv.ErrorCode_OK, Version: r5.Revision},
	} {
		if got := r5.Results[i]; got == nil || *got != want {
			t.Errorf("call 5 result %d = %v; want %v", i, got, want)
		}
	}

	// Two successful calls after the pre-write: revisions 2 and 3, one each, in whatever order
	// they ran.
	if revs := []int64{min(r0.Revision, r5.Revision), max(r0.Revision, r5.Revision)}; !slices.Equal(revs, []int64{2, 3}) {
		t.Errorf("revisions of the successful calls = %d, %d; want 2 and 3, distinct", r0.Revision, r5.Revision)
	}
	if st := s.engine.Stats(); st.Revision != 3 || st.Keys != 5 {
		t.Errorf("store stats = %+v; want revision 3 and 5 keys", st)
	}
	got := readKeys(t, s, mixedKeys...)
	want := map[string]string{
		"a": fmt.Sprintf("1@%d", r0.Revision), "b": fmt.Sprintf("1@%d", r0.Revision),
		"f": fmt.Sprintf("1@%d", r5.Revision), "g": fmt.Sprintf("1@%d", r5.Revision),
		"x": "old@1",
	}
	if !maps.Equal(got, want) {
		t.Errorf("store holds %v; want %v (nothing of calls 1, 3 and 4)", got, want)
	}
	return got
}

func TestPutAllManyRefusedWhole(t *testing.T) {
	s, _, _ := newTestService(t) // MaxBatchEntries 4
	ctx := context.Background()
	one := func() *kv.PutAllRequest { return &kv.PutAllRequest{Entries: []*kv.Entry{entry("k", "v")}} }
	tests := []struct {
		name string
		req  *kv.PutAllManyRequest
		code kv.ErrorCode
		msg  string
	}{
		{"no calls", &kv.PutAllManyRequest{}, kv.ErrorCode_INVALID_ARGUMENT, "no calls"},
		{"empty list", &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{}}, kv.ErrorCode_INVALID_ARGUMENT, "no calls"},
		{"over the limit", &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{one(), one(), one(), one(), one()}},
			kv.ErrorCode_TOO_LARGE, "limit of 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.PutAllMany(ctx, tc.req)
			if resp != nil {
				t.Errorf("resp = %v; want none with a whole-request error", resp)
			}
			if ke := wantCode(t, err, tc.code); !strings.Contains(ke.Message, tc.msg) {
				t.Errorf("message %q does not mention %q", ke.Message, tc.msg)
			}
		})
	}
	if st := s.engine.Stats(); st.Keys != 0 || st.Revision != 0 {
		t.Fatalf("refused requests wrote to the store: %+v", st)
	}
	// At the limit the request is served: four calls of the same key, in turn, four revisions.
	resp, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{one(), one(), one(), one()}})
	if err != nil || len(resp.Outcomes) != 4 {
		t.Fatalf("4 calls at a limit of 4 = %v, %v", resp, err)
	}
	for i := range 4 {
		if r := outcomeResponse(t, resp, i); r.Revision != int64(i+1) {
			t.Errorf("call %d revision %d; want %d (the calls run in turn)", i, r.Revision, i+1)
		}
	}
}

// TestPutAllManyPaths sends the same mixed request down both execution paths: in turn (the
// memory engine, unlimited admission) and side by side (limited admission; an engine that
// waits for durability). Outcomes are the same and in request order either way.
func TestPutAllManyPaths(t *testing.T) {
	tests := []struct {
		name       string
		sideBySide bool
		// open returns a fresh service and, for a durable engine, a reopen that closes the
		// engine and opens it again from its directory.
		open func(t *testing.T) (s *Service, reopen func() *Service)
	}{
		{"in turn: memory, unlimited", false, func(t *testing.T) (*Service, func() *Service) {
			s, _, _ := newTestService(t)
			s.limits.MaxBatchEntries = manyLimit
			return s, nil
		}},
		{"side by side: admission limited", true, func(t *testing.T) (*Service, func() *Service) {
			s, _, _ := newTestService(t)
			s.limits.MaxBatchEntries = manyLimit
			// Room for every key of the test at once, max_wait 0: no call waits or is refused,
			// whatever order the calls take their tokens in.
			s.SetAdmission(AdmissionSettings{Rate: 1000, Burst: 100, MaxWait: 0, MaxChunk: manyLimit})
			return s, nil
		}},
		{"side by side: durable", true, func(t *testing.T) (*Service, func() *Service) {
			dir := t.TempDir()
			clock := &testClock{}
			clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			var closeEngine func() error
			open := func() *Service {
				s, engine := durableService(t, dir, clock)
				s.limits.MaxBatchEntries = manyLimit
				c := sync.OnceValue(engine.Close)
				closeEngine = c
				t.Cleanup(func() { _ = c() })
				return s
			}
			s := open()
			return s, func() *Service {
				if err := closeEngine(); err != nil {
					t.Fatal(err)
				}
				return open()
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, reopen := tc.open(t)
			if got := s.engineWaits || !s.bucket.Unlimited(); got != tc.sideBySide {
				t.Fatalf("the service would run calls side by side: %v; the case is for %v", got, tc.sideBySide)
			}
			ctx := context.Background()
			preWrite(t, s)
			resp, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: mixedCalls()})
			if err != nil {
				t.Fatal(err)
			}
			held := checkMixed(t, s, resp)
			if reopen == nil {
				return
			}
			s = reopen()
			if got := readKeys(t, s, mixedKeys...); !maps.Equal(got, held) {
				t.Fatalf("after reopening the store holds %v; before %v", got, held)
			}
			// Call 0's request_id survived too: resent, it is replayed and writes nothing.
			again, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: mixedCalls()[:1]})
			if err != nil {
				t.Fatal(err)
			}
			first := outcomeResponse(t, resp, 0)
			if r := outcomeResponse(t, again, 0); !r.Replayed || r.Revision != first.Revision || r.Applied != first.Applied {
				t.Errorf("call 0 after reopening = %+v; want replayed at revision %d", r, first.Revision)
			}
			if rev := s.engine.Stats().Revision; rev != 3 {
				t.Errorf("store revision %d after a replay; want 3", rev)
			}
		})
	}
}

// TestPutAllManyIdempotency checks that each call of a PutAllMany is idempotent by its own
// request_id, exactly as a PutAll of it alone, on both paths.
func TestPutAllManyIdempotency(t *testing.T) {
	for _, limited := range []bool{false, true} {
		name := "in turn"
		if limited {
			name = "side by side"
		}
		open := func(t *testing.T) *Service {
			s, _, _ := newTestService(t) // at most 3 idempotency records
			s.limits.MaxBatchEntries = manyLimit
			if limited {
				s.SetAdmission(AdmissionSettings{Rate: 1000, Burst: 100, MaxWait: 0, MaxChunk: manyLimit})
			}
			return s
		}
		t.Run(name+"/resent", func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			if _, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{entry("k", "old")}}); err != nil {
				t.Fatal(err)
			}
			calls := []*kv.PutAllRequest{
				{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}, RequestId: new("r-a")},
				// A failed precondition is an outcome, and is replayed as such.
				{Entries: []*kv.Entry{{Key: "k", Value: []byte("new"), ExpectedVersion: new(int64(0))}}, RequestId: new("r-k")},
				// A call without a request_id is not part of the resend below.
			}
			first, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: calls})
			if err != nil {
				t.Fatal(err)
			}
			r0 := outcomeResponse(t, first, 0)
			if r0.Replayed {
				t.Fatalf("first call = %+v; replayed", r0)
			}
			outcomeError(t, first, 1, kv.ErrorCode_ALREADY_EXISTS)
			rev := s.engine.Stats().Revision
			held := readKeys(t, s, "a", "b", "k")

			again, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: calls})
			if err != nil {
				t.Fatal(err)
			}
			if r := outcomeResponse(t, again, 0); !r.Replayed || r.Revision != r0.Revision || r.Applied != r0.Applied {
				t.Errorf("resent call 0 = %+v; want replayed at revision %d, %d applied", r, r0.Revision, r0.Applied)
			}
			if e := outcomeError(t, again, 1, kv.ErrorCode_ALREADY_EXISTS); len(e.Failed) != 1 || e.Failed[0].Key != "k" {
				t.Errorf("resent call 1 failed = %v", e.Failed)
			}
			if got := s.engine.Stats().Revision; got != rev {
				t.Errorf("store revision %d after the resend; want %d (nothing new written)", got, rev)
			}
			if got := readKeys(t, s, "a", "b", "k"); !maps.Equal(got, held) {
				t.Errorf("store holds %v after the resend; want %v", got, held)
			}

			// The same request_id with another payload is that call's conflict, and only its.
			other, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{
				{Entries: []*kv.Entry{entry("a", "2"), entry("b", "1")}, RequestId: new("r-a")},
				{Entries: []*kv.Entry{entry("z", "1")}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			outcomeError(t, other, 0, kv.ErrorCode_IDEMPOTENCY_CONFLICT)
			if r := outcomeResponse(t, other, 1); r.Revision != rev+1 {
				t.Errorf("call beside the conflict = %+v; want revision %d", r, rev+1)
			}
			if got := readKeys(t, s, "a"); got["a"] != held["a"] {
				t.Errorf("a = %q after a conflicting call; want %q", got["a"], held["a"])
			}
		})
		t.Run(name+"/same as PutAll", func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			call := &kv.PutAllRequest{Entries: []*kv.Entry{entry("p", "1")}, RequestId: new("r-p")}
			alone, err := s.PutAll(ctx, call)
			if err != nil {
				t.Fatal(err)
			}
			many, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{call}})
			if err != nil {
				t.Fatal(err)
			}
			if r := outcomeResponse(t, many, 0); !r.Replayed || r.Revision != alone.Revision {
				t.Errorf("a PutAll's call resent in a PutAllMany = %+v; want replayed at revision %d", r, alone.Revision)
			}
			if rev := s.engine.Stats().Revision; rev != alone.Revision {
				t.Errorf("store revision %d; want %d", rev, alone.Revision)
			}
		})
		t.Run(name+"/twice in one request", func(t *testing.T) {
			s := open(t)
			call := &kv.PutAllRequest{Entries: []*kv.Entry{entry("q", "1")}, RequestId: new("r-q")}
			resp, err := s.PutAllMany(context.Background(), &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{call, call}})
			if err != nil {
				t.Fatal(err)
			}
			a, b := outcomeResponse(t, resp, 0), outcomeResponse(t, resp, 1)
			if a.Replayed == b.Replayed || a.Revision != 1 || b.Revision != 1 {
				t.Errorf("outcomes %+v and %+v; want one write at revision 1 and one replay of it", a, b)
			}
			if rev := s.engine.Stats().Revision; rev != 1 {
				t.Errorf("store revision %d; want 1", rev)
			}
		})
	}
}

// hookedEngine is a memory engine whose Apply runs before first (a hook may block, fail or
// panic) and which says it waits for durability when waits is set, so that PutAllMany runs
// calls side by side over it.
type hookedEngine struct {
	*store.Memory
	waits  bool
	before func(ctx context.Context, b store.Batch) error
}

func (e *hookedEngine) WaitsForDurability() bool { return e.waits }

func (e *hookedEngine) Apply(ctx context.Context, b store.Batch, results []store.Result) (store.Outcome, error) {
	if err := e.before(ctx, b); err != nil {
		return store.Outcome{}, err
	}
	return e.Memory.Apply(ctx, b, results)
}

func newHookedService(t *testing.T, waits bool, before func(context.Context, store.Batch) error) *Service {
	t.Helper()
	mem, err := store.NewMemory(store.Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	s, err := New(&hookedEngine{Memory: mem, waits: waits, before: before}, Options{
		Limits:            Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxBatchEntries: manyLimit},
		IdempotencyWindow: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.engineWaits != waits {
		t.Fatalf("engineWaits = %v; want %v", s.engineWaits, waits)
	}
	return s
}

// rendezvous lets Apply of the calls writing the keys in want return only once all of them
// have entered Apply: it proves that they wait side by side. ctx bounds the wait should they
// not (the test then fails with an INTERNAL outcome instead of hanging).
type rendezvous struct {
	mu      sync.Mutex
	want    map[string]bool
	arrived int
	all     chan struct{}
}

func (r *rendezvous) before(ctx context.Context, b store.Batch) error {
	if !r.want[b.Writes[0].Key] {
		return nil
	}
	r.mu.Lock()
	if r.arrived++; r.arrived == len(r.want) {
		close(r.all)
	}
	r.mu.Unlock()
	select {
	case <-r.all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the calls did not wait together: %w", ctx.Err())
	}
}

// TestPutAllManyWaitsTogether checks that over an engine that waits for durability the calls
// wait for it side by side, not one after another.
func TestPutAllManyWaitsTogether(t *testing.T) {
	const n = 4
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	r := &rendezvous{want: map[string]bool{}, all: make(chan struct{})}
	for _, k := range keys {
		r.want[k] = true
	}
	s := newHookedService(t, true, r.before)
	req := &kv.PutAllManyRequest{}
	for _, k := range keys {
		req.Calls = append(req.Calls, &kv.PutAllRequest{Entries: []*kv.Entry{entry(k, "v")}})
	}
	// The deadline only bounds a hang should the calls not meet; nothing waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.PutAllMany(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var revs []int64
	for i := range keys {
		revs = append(revs, outcomeResponse(t, resp, i).Revision)
	}
	slices.Sort(revs)
	if !slices.Equal(revs, []int64{1, 2, 3, 4}) {
		t.Errorf("revisions %v; want 1 to 4, one per call", revs)
	}
}

// TestPutAllManyEngineFailure checks that an engine failure in one call is that call's
// INTERNAL outcome and leaves the other calls alone, and that a panic in a call (on the
// caller's goroutine or on one of its own) is a fault of the whole request that does not
// crash the process: an error that is not a *kv.KVError, which the handler reports as
// INTERNAL.
func TestPutAllManyEngineFailure(t *testing.T) {
	for _, waits := range []bool{false, true} {
		t.Run(fmt.Sprintf("side by side %v", waits), func(t *testing.T) {
			s := newHookedService(t, waits, func(_ context.Context, b store.Batch) error {
				switch b.Writes[0].Key {
				case "fire":
					return errors.New("disk on fire")
				case "boom":
					panic("boom")
				}
				return nil
			})
			ctx := context.Background()
			call := func(k string) *kv.PutAllRequest { return &kv.PutAllRequest{Entries: []*kv.Entry{entry(k, "v")}} }

			resp, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{call("a"), call("fire"), call("b")}})
			if err != nil {
				t.Fatal(err)
			}
			outcomeResponse(t, resp, 0)
			if e := outcomeError(t, resp, 1, kv.ErrorCode_INTERNAL); !strings.Contains(e.Message, "disk on fire") {
				t.Errorf("call 1 message %q does not carry the engine's failure", e.Message)
			}
			outcomeResponse(t, resp, 2)
			if got := readKeys(t, s, "a", "b", "fire"); len(got) != 2 || got["fire"] != "" {
				t.Errorf("store holds %v; want a and b", got)
			}

			// The panicking call is call 1: with waits, on a goroutine of its own.
			resp, err = s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{call("c"), call("boom"), call("d")}})
			if resp != nil || err == nil {
				t.Fatalf("a panicking call = %v, %v; want an error for the whole request", resp, err)
			}
			if _, ok := errors.AsType[*kv.KVError](err); ok {
				t.Errorf("err = %v is a KVError; want a fault for the handler to report", err)
			}
			if !strings.Contains(err.Error(), "panic") || !strings.Contains(err.Error(), "boom") {
				t.Errorf("err = %v does not name the panic", err)
			}
			if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("PutAllMany", "INTERNAL")); n != 1 {
				t.Errorf("putallkv_kv_requests_total{PutAllMany,INTERNAL} = %v; want 1", n)
			}
		})
	}
}

func TestPutAllManyMetrics(t *testing.T) {
	s, _, reg := newTestService(t)
	s.limits.MaxBatchEntries = manyLimit
	ctx := context.Background()
	preWrite(t, s)
	_, _ = s.PutAllMany(ctx, &kv.PutAllManyRequest{})
	_, _ = s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: make([]*kv.PutAllRequest, manyLimit+1)})
	if _, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: mixedCalls()}); err != nil {
		t.Fatal(err)
	}
	// A request whose calls all fail is still served: OK for PutAllMany.
	if _, err := s.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{nil}}); err != nil {
		t.Fatal(err)
	}
	for code, want := range map[string]float64{"OK": 2, "INVALID_ARGUMENT": 1, "TOO_LARGE": 1, "INTERNAL": 0} {
		if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("PutAllMany", code)); n != want {
			t.Errorf("putallkv_kv_requests_total{method=PutAllMany,code=%s} = %v; want %v", code, n, want)
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// manyEngine is a memory engine that applies several batches at once (a store.ManyApplier) and
// records how: the number of batches of each ApplyAll, and the keys each Apply wrote.
type manyEngine struct {
	*store.Memory
	mu     sync.Mutex
	groups []int
	alone  []string
}

func (e *manyEngine) Apply(ctx context.Context, b store.Batch, results []store.Result) (store.Outcome, error) {
	e.mu.Lock()
	e.alone = append(e.alone, b.Writes[0].Key)
	e.mu.Unlock()
	return e.Memory.Apply(ctx, b, results)
}

func (e *manyEngine) ApplyAll(ctx context.Context, batches []store.Batch, results [][]store.Result, outs []store.Outcome, errs []error) {
	e.mu.Lock()
	e.groups = append(e.groups, len(batches))
	e.mu.Unlock()
	for i, b := range batches {
		outs[i], errs[i] = e.Memory.Apply(ctx, b, results[i])
	}
}

// TestPutAllManyAppliesTogether checks that the calls of a PutAllMany that need nothing but the
// engine reach it in one ApplyAll, that a call with a request_id runs as a PutAll of its own,
// and that a call refused by validation is refused before the engine, with its outcome in place.
func TestPutAllManyAppliesTogether(t *testing.T) {
	mem, err := store.NewMemory(store.Options{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	e := &manyEngine{Memory: mem}
	s, err := New(e, Options{
		Limits:            Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxBatchEntries: manyLimit},
		IdempotencyWindow: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	id := "req-c"
	resp, err := s.PutAllMany(context.Background(), &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{
		{Entries: []*kv.Entry{entry("a", "1")}},
		{Entries: []*kv.Entry{entry("b", "1"), entry("b2", "1")}, Mode: kv.WriteMode_BEST_EFFORT},
		{Entries: []*kv.Entry{entry("c", "1")}, RequestId: &id},
		{Entries: []*kv.Entry{entry("this key is far too long", "1")}},
		{Entries: []*kv.Entry{entry("d", "1")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 2, 4} {
		outcomeResponse(t, resp, i)
	}
	outcomeError(t, resp, 3, kv.ErrorCode_TOO_LARGE)
	if !slices.Equal(e.groups, []int{3}) || !slices.Equal(e.alone, []string{"c"}) {
		t.Errorf("ApplyAll of %v batches and Apply of %v; want one ApplyAll of 3 and an Apply of c", e.groups, e.alone)
	}
	if got := readKeys(t, s, "a", "b", "b2", "c", "d"); len(got) != 5 {
		t.Errorf("store holds %v; want a, b, b2, c and d", got)
	}
}
