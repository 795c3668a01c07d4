package kvclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/remote"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/rpcguard"
)

func TestBatcherAIMD(t *testing.T) {
	type step struct {
		name     string
		apply    func(a *aimd)
		size     int
		fallback bool
	}
	fast, slow := time.Millisecond, time.Second
	ok := func(latency time.Duration, suggested int32) func(*aimd) {
		return func(a *aimd) { a.onSuccess(latency, suggested) }
	}
	// refused is a refusal of a batch cut after the previous outcome came back.
	refused := func(suggested int32, applied int) func(*aimd) {
		return func(a *aimd) { a.onRefused(suggested, applied, a.epoch()) }
	}
	// echo is a refusal of a batch cut at epoch 0, in flight with the first refused one.
	echo := func(a *aimd) { a.onRefused(0, 0, 0) }
	dropped := func(a *aimd) { a.onDropped() }
	tests := []struct {
		name             string
		initial, ceiling int
		latency          time.Duration
		steps            []step
	}{
		{"grows by one per clean fast call", 16, 1000, 5 * time.Millisecond, []step{
			{"ok", ok(fast, 1000), 17, false},
			{"ok", ok(fast, 1000), 18, false},
			{"no suggestion", ok(fast, 0), 19, false},
		}},
		{"never above the ceiling", 999, 1000, 5 * time.Millisecond, []step{
			{"ok", ok(fast, 0), 1000, false},
			{"ok", ok(fast, 0), 1000, false},
		}},
		{"never above the suggestion", 16, 1000, 5 * time.Millisecond, []step{
			{"suggested 10", ok(fast, 10), 10, false},
			{"suggested 100", ok(fast, 100), 11, false},
			{"refused, suggested 3", refused(3, 1), 3, false},
		}},
		{"halves on refusal", 16, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 4), 8, false},
			{"refused", refused(0, 2), 4, false},
			{"ok", ok(fast, 0), 5, false},
		}},
		{"halves when slow", 16, 1000, 5 * time.Millisecond, []step{
			{"slow", ok(slow, 1000), 8, false},
			{"slow", ok(slow, 1000), 4, false},
		}},
		{"no latency rule at 0", 16, 1000, 0, []step{
			{"slow", ok(slow, 0), 17, false},
		}},
		{"halves on a call without an answer", 16, 1000, 5 * time.Millisecond, []step{
			{"dropped", dropped, 8, false},
		}},
		{"never below 1", 1, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 1), 1, false},
			{"dropped", dropped, 1, false},
			{"slow", ok(slow, 0), 1, false},
		}},
		{"initial above the ceiling", 5000, 1000, 0, []step{
			{"ok", ok(fast, 0), 1000, false},
		}},
		{"initial below 1", 0, 1000, 0, []step{
			{"ok", ok(fast, 0), 2, false},
		}},
		{"fallback after three empty refusals, recovery when tokens show", 16, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 0), 8, false},
			{"refused", refused(0, 0), 4, false},
			{"refused", refused(0, 0), 1, true},
			{"refused again", refused(1, 0), 1, true},
			{"answered, no tokens to spare", ok(fast, 1), 1, true},
			{"refused after a success", refused(1, 0), 1, true},
			{"answered with tokens", ok(fast, 5), 2, false},
			{"grows back additively", ok(fast, 5), 3, false},
		}},
		{"leaves fallback when the server suggests nothing", 16, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 0), 8, false},
			{"refused", refused(0, 0), 4, false},
			{"refused", refused(0, 0), 1, true},
			{"answered, no suggestion", ok(fast, 0), 2, false},
		}},
		{"leaving fallback while slow still leaves it", 16, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 0), 8, false},
			{"refused", refused(0, 0), 4, false},
			{"refused", refused(0, 0), 1, true},
			{"slow, with tokens", ok(slow, 5), 1, false},
			{"fast", ok(fast, 5), 2, false},
		}},
		{"a refusal that applied keys breaks the streak", 64, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 0), 32, false},
			{"refused", refused(0, 0), 16, false},
			{"refused, some applied", refused(0, 3), 8, false},
			{"refused", refused(0, 0), 4, false},
			{"refused", refused(0, 0), 2, false},
			{"refused", refused(0, 0), 1, true},
		}},
		{"a clean call breaks the streak", 64, 1000, 5 * time.Millisecond, []step{
			{"refused", refused(0, 0), 32, false},
			{"refused", refused(0, 0), 16, false},
			{"ok", ok(fast, 0), 17, false},
			{"refused", refused(0, 0), 8, false},
			{"refused", refused(0, 0), 4, false},
		}},
		{"refusals of batches in flight together count once", 64, 1000, 5 * time.Millisecond, []step{
			{"first refusal", echo, 32, false},
			{"echo", echo, 16, false},
			{"echo", echo, 8, false},
			{"echo", echo, 4, false},
			{"refused, sent after", refused(0, 0), 2, false},
			{"refused, sent after", refused(0, 0), 1, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAIMD(tt.initial, tt.ceiling, tt.latency)
			for i, s := range tt.steps {
				s.apply(&a)
				if a.size() != s.size || a.inFallback() != s.fallback {
					t.Fatalf("step %d (%s): size %d, fallback %v; want %d, %v", i, s.name, a.size(), a.inFallback(), s.size, s.fallback)
				}
			}
		})
	}
}

// TestBatcherCut checks the pending-batch bookkeeping without a loop or a network: batches
// are cut oldest first, up to the target size, one entry per key; entries whose caller gave
// up are dropped; refused entries wait for their retry time, then go first.
func TestBatcherCut(t *testing.T) {
	b := &Batcher{ctrl: newAIMD(3, 10, 0)}
	ctx := context.Background()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	soon, cancelSoon := context.WithTimeout(ctx, time.Hour)
	defer cancelSoon()
	later, cancelLater := context.WithTimeout(ctx, 2*time.Hour)
	defer cancelLater()
	latest, _ := later.Deadline()
	mk := func(ctx context.Context, key string) *entry {
		return &entry{ctx: ctx, key: key, res: make(chan result, 1)}
	}
	// gone's caller gives up before the cut; dead's context has ended, but its Put has not
	// noticed yet.
	a1, a2, bb, gone, dead, c, d := mk(soon, "a"), mk(ctx, "a"), mk(later, "b"), mk(ended, "x"), mk(ended, "y"), mk(soon, "c"), mk(ctx, "d")
	now := time.Unix(0, 0)
	b.enqueue([]*entry{a1, bb, gone, dead, c, a2, d}, now, false)
	if _, err := b.abandon(gone); !errors.Is(err, context.Canceled) || strings.Contains(err.Message, "may or may not") {
		t.Fatalf("abandoning a queued entry: %v, want context.Canceled, not sent", err)
	}
	keys := func(es []*entry) string {
		var ks []string
		for _, e := range es {
			ks = append(ks, e.key)
		}
		return strings.Join(ks, ",")
	}

	one := func(rd round) *batch {
		t.Helper()
		if len(rd.calls) != 1 || !rd.calls[0].last {
			t.Fatalf("round of %d calls; want one, the last", len(rd.calls))
		}
		return rd.calls[0]
	}
	first := b.cut()
	if got := keys(one(first).entries); got != "a,b,c" || one(first).limit != 3 {
		t.Fatalf("first batch %s (limit %d), want a,b,c (limit 3)", got, one(first).limit)
	}
	if !first.deadline.Equal(latest) {
		t.Errorf("first batch deadline %v, want the latest of its callers' (%v)", first.deadline, latest)
	}
	if dead.state != abandoned || b.nReady != 2 || keys(b.ready) != "a,d" {
		t.Fatalf("after the first cut: dead entry %v, %d ready (%s); want abandoned, 2 (a,d)", dead.state, b.nReady, keys(b.ready))
	}

	// The first batch comes back refused: its entries wait 5ms, then go before the rest.
	b.refuse(one(first).entries, &Error{Code: kv.ErrorCode_RESOURCE_EXHAUSTED, RetryAfter: 5 * time.Millisecond}, now)
	b.promote(now.Add(4 * time.Millisecond))
	if b.nReady != 2 || len(b.delayed) != 3 {
		t.Fatalf("before the retry time: %d ready, %d delayed; want 2, 3", b.nReady, len(b.delayed))
	}
	b.promote(now.Add(5 * time.Millisecond))
	if b.nReady != 5 || len(b.delayed) != 0 || !b.nextDue.IsZero() || keys(b.ready) != "a,b,c,a,d" {
		t.Fatalf("at the retry time: %d ready (%s), %d delayed; want 5 (a,b,c,a,d), 0", b.nReady, keys(b.ready), len(b.delayed))
	}
	second := b.cut()
	if got := keys(one(second).entries); got != "a,b,c" || !second.deadline.Equal(latest) {
		t.Fatalf("second batch %s, deadline %v; want a,b,c, %v", got, second.deadline, latest)
	}
	third := b.cut()
	if got := keys(one(third).entries); got != "a,d" || !third.deadline.IsZero() || b.nReady != 0 {
		t.Fatalf("third batch %s, deadline %v, %d left; want a,d, none, 0", got, third.deadline, b.nReady)
	}
}

// TestBatcherCutRepeatedKeys: the n-th waiting Put of a key goes in the n-th call of the round
// trip, up to maxRoundCalls calls; the target size counts the entries of every call.
func TestBatcherCutRepeatedKeys(t *testing.T) {
	mk := func(key string) *entry { return &entry{ctx: context.Background(), key: key, res: make(chan result, 1)} }
	keysOf := func(rd round) string {
		var calls []string
		for i, bt := range rd.calls {
			var ks []string
			for _, e := range bt.entries {
				ks = append(ks, e.key)
			}
			if bt.last != (i == len(rd.calls)-1) {
				t.Errorf("call %d of %d: last %v", i, len(rd.calls), bt.last)
			}
			calls = append(calls, strings.Join(ks, ","))
		}
		return strings.Join(calls, " | ")
	}
	b := &Batcher{ctrl: newAIMD(3, 10, 0)}
	b.enqueue([]*entry{mk("h"), mk("h"), mk("e"), mk("h")}, time.Unix(0, 0), false)
	if got := keysOf(b.cut()); got != "h,e | h" {
		t.Fatalf("first round %q; want \"h,e | h\"", got)
	}
	if got := keysOf(b.cut()); got != "h" || b.nReady != 0 {
		t.Fatalf("second round %q, %d left; want \"h\", 0", got, b.nReady)
	}

	b = &Batcher{ctrl: newAIMD(100, 100, 0)}
	for range maxRoundCalls + 4 {
		b.enqueue([]*entry{mk("h")}, time.Unix(0, 0), false)
	}
	if rd := b.cut(); len(rd.calls) != maxRoundCalls || b.nReady != 4 {
		t.Fatalf("a round of %d calls, %d left; want %d calls, 4 left", len(rd.calls), b.nReady, maxRoundCalls)
	}
}

// TestBatcherCutRoundOfCalls: once the server has suggested a batch, a round trip carries
// what is queued in calls of at most the target size, up to the suggestion in all; in
// fallback, one call of one key.
func TestBatcherCutRoundOfCalls(t *testing.T) {
	mk := func(key string) *entry { return &entry{ctx: context.Background(), key: key, res: make(chan result, 1)} }
	sizes := func(rd round) []int {
		var n []int
		for _, bt := range rd.calls {
			n = append(n, len(bt.entries))
		}
		return n
	}
	b := &Batcher{ctrl: newAIMD(2, 10, 0), suggested: 5}
	for _, k := range []string{"a", "b", "c", "a", "d", "e", "f"} {
		b.enqueue([]*entry{mk(k)}, time.Unix(0, 0), false)
	}
	// a,b | c,a | d: the second a goes in the first call with room after the first a's.
	if got := sizes(b.cut()); !slices.Equal(got, []int{2, 2, 1}) || b.nReady != 2 {
		t.Fatalf("first round %v, %d left; want [2 2 1], 2 left", got, b.nReady)
	}
	if got := sizes(b.cut()); !slices.Equal(got, []int{2}) || b.nReady != 0 {
		t.Fatalf("second round %v, %d left; want [2], 0 left", got, b.nReady)
	}

	b = &Batcher{ctrl: newAIMD(1, 1, 0), suggested: 1000}
	b.ctrl.fallback = true
	b.enqueue([]*entry{mk("a"), mk("b")}, time.Unix(0, 0), false)
	if got := sizes(b.cut()); !slices.Equal(got, []int{1}) || b.nReady != 1 {
		t.Fatalf("round in fallback %v, %d left; want [1], 1 left", got, b.nReady)
	}
}

// fakeServer answers the Batcher's PutAll calls in place of a server, from a middleware of
// the real Client (pointed at an address where nothing listens), so each kind of answer can
// be scripted and the batcher's handling of it tested without a network.
type fakeServer struct {
	t *testing.T
	// answer returns the response to req, or the error to fail the call with (a *kv.KVError
	// is thrown as the server's exception); called with mu held.
	answer func(req *kv.PutAllRequest) (*kv.PutAllResponse, error)

	mu         sync.Mutex
	calls      [][]string       // the keys of every call, in order
	roundTrips int              // the PutAllMany round trips among them
	versions   map[string]int64 // value written -> version given
	next       int64            // the last version given
}

// newFakeBatcher returns a Batcher whose calls s answers. It is closed when the test ends.
// The fake answers at once, so how long a call takes is only how busy the machine is: the
// target-latency rule is off unless opts turn it on (TestBatcherAIMD covers it).
func newFakeBatcher(t *testing.T, answer func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error), opts ...BatcherOption) (*Batcher, *fakeServer) {
	t.Helper()
	opts = append([]BatcherOption{WithTargetLatency(0)}, opts...)
	s := &fakeServer{t: t, versions: map[string]int64{}}
	s.answer = func(req *kv.PutAllRequest) (*kv.PutAllResponse, error) { return answer(s, req) }
	c, err := New([]string{testnet.DeadAddr(t)}, WithKitexOptions(client.WithMiddleware(s.middleware)))
	if err != nil {
		t.Fatal(err)
	}
	b := c.NewBatcher(opts...)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return b, s
}

func (s *fakeServer) middleware(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		switch args := req.(type) {
		case *kv.KVServicePutAllArgs:
			s.mu.Lock()
			defer s.mu.Unlock()
			r, err := s.call(args.Req)
			var thrown *kv.KVError
			switch {
			case errors.As(err, &thrown):
				resp.(*kv.KVServicePutAllResult).Err = thrown
			case err != nil:
				return err
			default:
				resp.(*kv.KVServicePutAllResult).Success = r
			}
			return nil
		case *kv.KVServicePutAllManyArgs:
			// Each call is answered as a PutAll of its own; an error that is not a
			// *kv.KVError fails the whole round trip.
			s.mu.Lock()
			defer s.mu.Unlock()
			s.roundTrips++
			out := &kv.PutAllManyResponse{}
			for _, call := range args.Req.Calls {
				r, err := s.call(call)
				var thrown *kv.KVError
				switch {
				case errors.As(err, &thrown):
					out.Outcomes = append(out.Outcomes, &kv.PutAllOutcome{Error: thrown})
				case err != nil:
					return err
				default:
					out.Outcomes = append(out.Outcomes, &kv.PutAllOutcome{Response: r})
				}
			}
			resp.(*kv.KVServicePutAllManyResult).Success = out
			return nil
		}
		return next(ctx, req, resp)
	}
}

// call checks and records one PutAll call and answers it; mu must be held.
func (s *fakeServer) call(req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	keys := make([]string, len(req.Entries))
	seen := map[string]bool{}
	for i, e := range req.Entries {
		if seen[e.Key] {
			s.t.Errorf("a call names key %q twice", e.Key)
		}
		seen[e.Key], keys[i] = true, e.Key
	}
	if req.Mode != kv.WriteMode_BEST_EFFORT {
		s.t.Errorf("mode %v, want BEST_EFFORT", req.Mode)
	}
	s.calls = append(s.calls, keys)
	return s.answer(req)
}

// respond writes the entries code says are OK, each at a version of its own, and refuses
// the others with their code (retry_after 1ms for RESOURCE_EXHAUSTED).
func (s *fakeServer) respond(req *kv.PutAllRequest, suggested int32, code func(*kv.Entry) kv.ErrorCode) *kv.PutAllResponse {
	resp := &kv.PutAllResponse{SuggestedBatch: suggested}
	for _, e := range req.Entries {
		st := &kv.KeyStatus{Key: e.Key, Code: code(e)}
		switch st.Code {
		case kv.ErrorCode_OK:
			s.next++
			st.Version = s.next
			s.versions[string(e.Value)] = s.next
			resp.Applied++
		case kv.ErrorCode_RESOURCE_EXHAUSTED:
			resp.RetryAfterMs = 1
		}
		resp.Results = append(resp.Results, st)
	}
	return resp
}

// callsWith returns how many calls carried key.
func (s *fakeServer) callsWith(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, keys := range s.calls {
		for _, k := range keys {
			if k == key {
				n++
			}
		}
	}
	return n
}

// versionOf returns the version the fake gave the write of value.
func (s *fakeServer) versionOf(value string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.versions[value]
	return v, ok
}

func acceptAll(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
	return s.respond(req, 1000, func(*kv.Entry) kv.ErrorCode { return kv.ErrorCode_OK }), nil
}

// putAll makes one Put per key, all at once, with the key as value, and returns each
// caller's outcome by key.
func putAll(b *Batcher, keys ...string) map[string]result {
	var mu sync.Mutex
	out := make(map[string]result, len(keys))
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			v, err := b.Put(context.Background(), k, []byte(k))
			var e *Error
			errors.As(err, &e)
			mu.Lock()
			out[k] = result{version: v, err: e}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// wantWritten fails unless every key's Put got the version the fake gave its write.
func wantWritten(t *testing.T, s *fakeServer, got map[string]result, keys ...string) {
	t.Helper()
	for _, k := range keys {
		want, ok := s.versionOf(k)
		if r := got[k]; r.err != nil || !ok || r.version != want {
			t.Errorf("Put %q = %d, %v; want version %d (written: %v)", k, r.version, r.err, want, ok)
		}
	}
}

// TestBatcherCoalesces checks that Puts waiting together go out as one call of the target
// size, and each caller gets its own key's version. The linger is long, so the batch is sent
// exactly when the eighth entry arrives.
func TestBatcherCoalesces(t *testing.T) {
	events := make(chan BatchEvent, 1)
	b, s := newFakeBatcher(t, acceptAll, WithBatchSize(8, 8), WithLinger(time.Hour),
		WithBatchObserver(func(ev BatchEvent) { events <- ev }))
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	got := putAll(b, keys...)
	wantWritten(t, s, got, keys...)
	if len(s.calls) != 1 || len(s.calls[0]) != 8 {
		t.Fatalf("calls %v, want one of 8 keys", s.calls)
	}
	if ev := <-events; ev.Size != 8 || ev.Limit != 8 || ev.Target != 8 || ev.Suggested != 1000 || ev.Refused != 0 || ev.Fallback {
		t.Fatalf("event %+v", ev)
	}
}

// TestBatcherHotKeyShareARoundTrip has eight Puts of one key wait together: they go out in
// one round trip, a PutAllMany of eight calls (no call names the key twice: the fake checks),
// and each caller gets the version of its own write.
func TestBatcherHotKeyShareARoundTrip(t *testing.T) {
	events := make(chan BatchEvent, 8)
	b, s := newFakeBatcher(t, acceptAll, WithBatchSize(8, 8), WithLinger(time.Hour),
		WithBatchObserver(func(ev BatchEvent) { events <- ev }))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			value := fmt.Sprint("hot/", i)
			v, err := b.Put(context.Background(), "hot", []byte(value))
			s.mu.Lock()
			want, ok := s.versions[value]
			s.mu.Unlock()
			if err != nil || !ok || v != want {
				t.Errorf("Put of %s = %d, %v; want %d", value, v, err, want)
			}
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.roundTrips != 1 || len(s.calls) != 8 {
		t.Fatalf("%d round trips, %d calls; want the 8 calls in one round trip", s.roundTrips, len(s.calls))
	}
	for range 8 {
		if ev := <-events; ev.Size != 1 || ev.Limit != 8 {
			t.Fatalf("event %+v; want one entry per call, cut to a target of 8", ev)
		}
	}
}

// TestBatcherKeysOncePerCall has many goroutines write few keys: no call may name a key twice
// (the fake checks), and every caller gets the version of its own write.
func TestBatcherKeysOncePerCall(t *testing.T) {
	b, s := newFakeBatcher(t, acceptAll)
	const goroutines, puts = 20, 25
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range puts {
				value := fmt.Sprintf("g%d/%d", g, i)
				v, err := b.Put(context.Background(), fmt.Sprint("key", i%5), []byte(value))
				if want, ok := s.versionOf(value); err != nil || !ok || v != want {
					t.Errorf("Put of %s = %d, %v; want %d", value, v, err, want)
				}
			}
		})
	}
	wg.Wait()
	sent := 0
	for _, keys := range s.calls {
		sent += len(keys)
	}
	if sent != goroutines*puts {
		t.Fatalf("%d entries sent, want %d", sent, goroutines*puts)
	}
}

// TestBatcherRoutesErrors checks that a key's own failure goes to its caller only, whether
// the server reports it in the key's result or fails the whole call naming the key.
func TestBatcherRoutesErrors(t *testing.T) {
	b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
		for i, e := range req.Entries {
			if e.Key == "bad" { // as the server's validation, before anything is written
				return nil, &kv.KVError{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: fmt.Sprintf("entries[%d]: key is not valid UTF-8", i),
					Failed: []*kv.KeyStatus{{Key: "bad", Code: kv.ErrorCode_INVALID_ARGUMENT}}}
			}
		}
		return s.respond(req, 1000, func(e *kv.Entry) kv.ErrorCode {
			if e.Key == "exists" {
				return kv.ErrorCode_ALREADY_EXISTS
			}
			return kv.ErrorCode_OK
		}), nil
	})
	good := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	got := putAll(b, append([]string{"bad", "exists"}, good...)...)
	wantWritten(t, s, got, good...)
	if e := got["bad"].err; !errors.Is(e, ErrInvalidArgument) || len(e.Failed) != 1 || e.Failed[0].Key != "bad" || !strings.Contains(e.Message, "UTF-8") {
		t.Errorf("Put bad: %#v, want the server's INVALID_ARGUMENT naming it", e)
	}
	if e := got["exists"].err; !errors.Is(e, ErrAlreadyExists) || len(e.Failed) != 1 || e.Failed[0].Key != "exists" {
		t.Errorf("Put exists: %#v, want ALREADY_EXISTS naming it", e)
	}
}

// TestBatcherSplitsOversizedRequests checks that a request too large as a whole is sent
// again in smaller batches, and that an entry too large on its own fails its caller only.
func TestBatcherSplitsOversizedRequests(t *testing.T) {
	tooLarge := kerrors.ErrRemoteOrNetwork.WithCause(remote.NewTransErrorWithMsg(rpcguard.TypeTooLarge, "request is over the server's limit"))
	b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
		for _, e := range req.Entries {
			if len(req.Entries) > 2 || e.Key == "huge" {
				return nil, tooLarge
			}
		}
		return acceptAll(s, req)
	}, WithBatchSize(8, 8))
	good := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	got := putAll(b, append([]string{"huge"}, good...)...)
	wantWritten(t, s, got, good...)
	if e := got["huge"].err; !errors.Is(e, ErrTooLarge) {
		t.Errorf("Put huge: %v, want TOO_LARGE", e)
	}
	if n := s.callsWith("huge"); n < 1 {
		t.Errorf("huge was sent %d times", n)
	}
}

// TestBatcherRetriesRefusals checks that refused entries, whether the whole call or single
// keys were refused, are sent again until written, each written once, and that the target
// halves after each refusal.
func TestBatcherRetriesRefusals(t *testing.T) {
	refusedOnce := map[string]bool{}
	var mu sync.Mutex
	var events []BatchEvent
	b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
		if len(s.calls) == 1 {
			return nil, &kv.KVError{Code: kv.ErrorCode_RESOURCE_EXHAUSTED, Message: "at the limit", RetryAfterMs: 1}
		}
		return s.respond(req, 1000, func(e *kv.Entry) kv.ErrorCode {
			if !refusedOnce[e.Key] {
				refusedOnce[e.Key] = true
				return kv.ErrorCode_RESOURCE_EXHAUSTED
			}
			return kv.ErrorCode_OK
		}), nil
	}, WithBatchSize(16, 16), WithBatchObserver(func(ev BatchEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}))
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	got := putAll(b, keys...)
	if err := b.Close(); err != nil { // the observer has seen every call
		t.Fatal(err)
	}
	wantWritten(t, s, got, keys...)
	if len(s.versions) != len(keys) {
		t.Errorf("%d writes applied, want %d: one per key", len(s.versions), len(keys))
	}
	prev, refusals := 16, 0
	for i, ev := range events {
		if ev.Refused > 0 {
			refusals++
			if ev.Target > max(1, prev/2) {
				t.Errorf("event %d %+v: target %d after a refusal, from %d", i, ev, ev.Target, prev)
			}
		}
		prev = ev.Target
	}
	if refusals < 2 {
		t.Errorf("%d calls with refusals, want at least 2 (the whole-call one and a per-key one)", refusals)
	}
}

// TestBatcherFailsQuotaRefusals checks that a RESOURCE_EXHAUSTED with no retry_after (the
// server's memory quota, per key or for the whole call) reaches its callers at once instead of
// being sent again: no wait gets past a full store. The callers' deadline is far off, so a
// Batcher that queued them again would fail them with it instead.
func TestBatcherFailsQuotaRefusals(t *testing.T) {
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
				if whole {
					return nil, &kv.KVError{Code: kv.ErrorCode_RESOURCE_EXHAUSTED, Message: "the store is full"}
				}
				resp := &kv.PutAllResponse{SuggestedBatch: 16}
				for _, e := range req.Entries {
					resp.Results = append(resp.Results, &kv.KeyStatus{Key: e.Key, Code: kv.ErrorCode_RESOURCE_EXHAUSTED})
				}
				return resp, nil
			}, WithBatchSize(4, 4), WithLinger(time.Hour))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for _, k := range []string{"k0", "k1", "k2", "k3"} {
				wg.Go(func() {
					_, err := b.Put(ctx, k, []byte(k))
					var e *Error
					if !errors.As(err, &e) || e.Code != kv.ErrorCode_RESOURCE_EXHAUSTED || ctx.Err() != nil {
						t.Errorf("Put %q: %v; want RESOURCE_EXHAUSTED before the deadline", k, err)
					}
				})
			}
			wg.Wait()
			if n := s.callsWith("k0"); n != 1 {
				t.Errorf("k0 was sent %d times; want once", n)
			}
		})
	}
}

// TestBatcherFailsBatchWithoutAnswer checks that a call that got no answer fails each of its
// entries with UNAVAILABLE and is not sent again (it may have been written).
func TestBatcherFailsBatchWithoutAnswer(t *testing.T) {
	b, s := newFakeBatcher(t, func(*fakeServer, *kv.PutAllRequest) (*kv.PutAllResponse, error) {
		return nil, errors.New("connection reset by peer")
	})
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	got := putAll(b, keys...)
	for _, k := range keys {
		if e := got[k].err; !errors.Is(e, ErrUnavailable) || !strings.Contains(e.Message, "connection reset") {
			t.Errorf("Put %s: %v, want UNAVAILABLE with the cause", k, e)
		}
		if n := s.callsWith(k); n != 1 {
			t.Errorf("%s sent %d times, want once", k, n)
		}
	}
}

// TestBatcherFallsBackAndRecovers has the fake refuse everything until the batcher sends one
// key per call, then admit everything: the batcher must leave the fallback and batch again.
func TestBatcherFallsBackAndRecovers(t *testing.T) {
	var refusing atomic.Bool
	refusing.Store(true)
	inFallback, batching := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	var sawFallback atomic.Bool
	b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
		if refusing.Load() {
			return s.respond(req, 1, func(*kv.Entry) kv.ErrorCode { return kv.ErrorCode_RESOURCE_EXHAUSTED }), nil
		}
		return acceptAll(s, req)
	}, WithLinger(time.Millisecond), WithBatchObserver(func(ev BatchEvent) {
		if ev.Fallback {
			if ev.Size != 1 || ev.Limit != 1 {
				t.Errorf("fallback event %+v, want one key", ev)
			}
			sawFallback.Store(true)
			once1.Do(func() { close(inFallback) })
		} else if sawFallback.Load() && ev.Target > 1 {
			once2.Do(func() { close(batching) })
		}
	}))
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	done := make(chan map[string]result)
	go func() { done <- putAll(b, keys...) }()
	<-inFallback
	refusing.Store(false)
	<-batching
	wantWritten(t, s, <-done, keys...)
}

// TestBatcherContextEnds checks that a caller's context is honoured at every stage, and that
// an entry whose caller has gone is never sent afterwards.
func TestBatcherContextEnds(t *testing.T) {
	wantEnded := func(t *testing.T, err error, sent bool) {
		t.Helper()
		var e *Error
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) || !errors.As(err, &e) {
			t.Fatalf("err = %v, want an UNAVAILABLE *Error wrapping context.Canceled", err)
		}
		if got := strings.Contains(e.Message, "may or may not"); got != sent {
			t.Fatalf("message %q; says the outcome is unknown: %v, want %v", e.Message, got, sent)
		}
	}

	t.Run("already ended", func(t *testing.T) {
		b, s := newFakeBatcher(t, acceptAll)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := b.Put(ctx, "k", nil)
		wantEnded(t, err, false)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if len(s.calls) != 0 {
			t.Fatalf("calls %v, want none", s.calls)
		}
	})

	t.Run("while waiting to retry", func(t *testing.T) {
		refused := make(chan struct{}, 1)
		b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
			resp := s.respond(req, 1, func(*kv.Entry) kv.ErrorCode { return kv.ErrorCode_RESOURCE_EXHAUSTED })
			resp.RetryAfterMs = time.Hour.Milliseconds()
			return resp, nil
		}, WithBatchObserver(func(BatchEvent) { refused <- struct{}{} }))
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error)
		go func() {
			_, err := b.Put(ctx, "k", nil)
			errs <- err
		}()
		<-refused
		cancel()
		wantEnded(t, <-errs, false)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if n := s.callsWith("k"); n != 1 {
			t.Fatalf("k sent %d times, want once", n)
		}
	})

	t.Run("while in flight", func(t *testing.T) {
		inFlight, release := make(chan struct{}), make(chan struct{})
		b, s := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
			close(inFlight)
			<-release
			return s.respond(req, 1, func(*kv.Entry) kv.ErrorCode { return kv.ErrorCode_RESOURCE_EXHAUSTED }), nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error)
		go func() {
			_, err := b.Put(ctx, "k", nil)
			errs <- err
		}()
		<-inFlight
		cancel()
		wantEnded(t, <-errs, true)
		close(release)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if n := s.callsWith("k"); n != 1 {
			t.Fatalf("k sent %d times, want once: refused after its caller left, it is not sent again", n)
		}
	})
}

// TestBatcherClose checks that Close sends what has not been sent, ends retry waits with the
// refusal, and that Put afterwards fails.
func TestBatcherClose(t *testing.T) {
	t.Run("flushes", func(t *testing.T) {
		b, s := newFakeBatcher(t, acceptAll, WithLinger(time.Hour))
		e, err := b.submit(context.Background(), "k", []byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		v, werr := b.wait(e)
		if want, _ := s.versionOf("k"); werr != nil || v != want || want == 0 {
			t.Fatalf("Put after Close flushed it = %d, %v; want %d", v, werr, want)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err2 := b.Put(context.Background(), "k2", nil)
		if !errors.Is(err2, ErrBatcherClosed) || !errors.Is(err2, ErrUnavailable) {
			t.Fatalf("Put after Close: %v, want ErrBatcherClosed (UNAVAILABLE)", err2)
		}
	})

	t.Run("ends retry waits", func(t *testing.T) {
		refused := make(chan struct{}, 1)
		b, _ := newFakeBatcher(t, func(s *fakeServer, req *kv.PutAllRequest) (*kv.PutAllResponse, error) {
			resp := s.respond(req, 1, func(*kv.Entry) kv.ErrorCode { return kv.ErrorCode_RESOURCE_EXHAUSTED })
			resp.RetryAfterMs = time.Hour.Milliseconds()
			return resp, nil
		}, WithBatchObserver(func(BatchEvent) { refused <- struct{}{} }))
		errs := make(chan error)
		go func() {
			_, err := b.Put(context.Background(), "k", nil)
			errs <- err
		}()
		<-refused
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		var e *Error
		if err := <-errs; !errors.Is(err, ErrResourceExhausted) || !errors.As(err, &e) || e.RetryAfter != time.Hour {
			t.Fatalf("Put = %v, want the refusal with its retry-after of 1h", err)
		}
	})
}
