package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testLimits = Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxBatchEntries: 4}

type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestService(t *testing.T) (*Service, *testClock, *prometheus.Registry) {
	t.Helper()
	clock := &testClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	engine, err := store.NewMemory(store.Options{Shards: 8, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	reg := prometheus.NewRegistry()
	s, err := New(engine, Options{
		Limits:            testLimits,
		IdempotencyWindow: time.Minute,
		Registerer:        reg,
		Now:               clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, clock, reg
}

func entry(key, value string) *kv.Entry { return &kv.Entry{Key: key, Value: []byte(value)} }

// wantCode fails the test unless err is a *kv.KVError with code.
func wantCode(t *testing.T, err error, code kv.ErrorCode) *kv.KVError {
	t.Helper()
	var ke *kv.KVError
	if !errors.As(err, &ke) {
		t.Fatalf("err = %v; want a KVError %v", err, code)
	}
	if ke.Code != code {
		t.Fatalf("code = %v (%s); want %v", ke.Code, ke.Message, code)
	}
	if ke.Message == "" {
		t.Fatalf("error %v has no message", code)
	}
	return ke
}

func TestPutAllValidation(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		req        *kv.PutAllRequest
		code       kv.ErrorCode
		failedKey  string
		msgContain string
	}{
		{"empty batch", &kv.PutAllRequest{}, kv.ErrorCode_INVALID_ARGUMENT, "", "empty"},
		{"too many entries", &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", ""), entry("b", ""), entry("c", ""), entry("d", ""), entry("e", "")}},
			kv.ErrorCode_TOO_LARGE, "", "limit of 4"},
		{"bad mode", &kv.PutAllRequest{Mode: 7, Entries: []*kv.Entry{entry("a", "")}}, kv.ErrorCode_INVALID_ARGUMENT, "", "mode"},
		{"empty key", &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", ""), entry("", "")}}, kv.ErrorCode_INVALID_ARGUMENT, "", "entries[1]"},
		{"long key", &kv.PutAllRequest{Entries: []*kv.Entry{entry(strings.Repeat("k", 17), "")}}, kv.ErrorCode_TOO_LARGE, strings.Repeat("k", 17), "key of 17 bytes"},
		{"bad utf-8 key", &kv.PutAllRequest{Entries: []*kv.Entry{entry("a\xff", "")}}, kv.ErrorCode_INVALID_ARGUMENT, "a\xff", "UTF-8"},
		{"big value", &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", strings.Repeat("v", 33))}}, kv.ErrorCode_TOO_LARGE, "a", "value of 33 bytes"},
		{"negative expected", &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a", ExpectedVersion: new(int64(-2))}}}, kv.ErrorCode_INVALID_ARGUMENT, "a", "expected_version"},
		{"zero ttl", &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a", TtlMs: new(int64(0))}}}, kv.ErrorCode_INVALID_ARGUMENT, "a", "ttl_ms"},
		{"huge ttl", &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a", TtlMs: new(int64(1 << 62))}}}, kv.ErrorCode_INVALID_ARGUMENT, "a", "ttl_ms"},
		{"duplicate key", &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1"), entry("a", "2")}}, kv.ErrorCode_INVALID_ARGUMENT, "a", "more than once"},
		{"long request_id", &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "")}, RequestId: new(strings.Repeat("r", 129))}, kv.ErrorCode_INVALID_ARGUMENT, "", "request_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutAll(ctx, tc.req)
			ke := wantCode(t, err, tc.code)
			if !strings.Contains(ke.Message, tc.msgContain) {
				t.Errorf("message %q does not mention %q", ke.Message, tc.msgContain)
			}
			if tc.failedKey != "" && (len(ke.Failed) != 1 || ke.Failed[0].Key != tc.failedKey) {
				t.Errorf("failed = %v; want key %q", ke.Failed, tc.failedKey)
			}
		})
	}
	if st := s.engine.Stats(); st.Keys != 0 || st.Revision != 0 {
		t.Fatalf("refused calls wrote to the store: %+v", st)
	}
}

func TestPutAllAtomicFailureReportsEveryFailingKey(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	if _, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{
		{Key: "a", Value: []byte("2"), ExpectedVersion: new(int64(0))},
		entry("c", "2"),
		{Key: "b", Value: []byte("2"), ExpectedVersion: new(int64(5))},
	}})
	ke := wantCode(t, err, kv.ErrorCode_ALREADY_EXISTS)
	if len(ke.Failed) != 2 || ke.Failed[0].Key != "a" || ke.Failed[0].Code != kv.ErrorCode_ALREADY_EXISTS ||
		ke.Failed[1].Key != "b" || ke.Failed[1].Code != kv.ErrorCode_VERSION_MISMATCH || ke.Failed[1].Version != 1 {
		t.Fatalf("failed = %v", ke.Failed)
	}
	got, err := s.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"c"}})
	if err != nil || got.Items[0].Found {
		t.Fatalf("atomic failure wrote c: %v %v", got, err)
	}
}

func TestSingleKeyMethods(t *testing.T) {
	s, clock, _ := newTestService(t)
	ctx := context.Background()
	put, err := s.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v1"), TtlMs: new(int64(1000))})
	if err != nil || put.Version != 1 || !put.Created {
		t.Fatalf("Put = %+v, %v", put, err)
	}
	put, err = s.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v2"), ExpectedVersion: new(int64(1)), TtlMs: new(int64(1000))})
	if err != nil || put.Version != 2 || put.Created {
		t.Fatalf("CAS Put = %+v, %v", put, err)
	}
	_, err = s.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v3"), ExpectedVersion: new(int64(1))})
	if ke := wantCode(t, err, kv.ErrorCode_VERSION_MISMATCH); len(ke.Failed) != 1 || ke.Failed[0].Version != 2 {
		t.Fatalf("failed = %v", ke.Failed)
	}
	_, err = s.Put(ctx, &kv.PutRequest{Key: "k", ExpectedVersion: new(int64(0))})
	wantCode(t, err, kv.ErrorCode_ALREADY_EXISTS)

	got, err := s.Get(ctx, &kv.GetRequest{Key: "k"})
	if err != nil || string(got.Item.Value) != "v2" || got.Item.Version != 2 || got.Item.ExpiresAtMs != clock.now().UnixMilli()+1000 {
		t.Fatalf("Get = %+v, %v", got.GetItem(), err)
	}
	_, err = s.Get(ctx, &kv.GetRequest{Key: ""})
	wantCode(t, err, kv.ErrorCode_INVALID_ARGUMENT)

	clock.advance(time.Second)
	_, err = s.Get(ctx, &kv.GetRequest{Key: "k"})
	wantCode(t, err, kv.ErrorCode_NOT_FOUND)
	_, err = s.Delete(ctx, &kv.DeleteRequest{Key: "k"})
	wantCode(t, err, kv.ErrorCode_NOT_FOUND)

	if _, err := s.Put(ctx, &kv.PutRequest{Key: "d", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Delete(ctx, &kv.DeleteRequest{Key: "d", ExpectedVersion: new(int64(0))})
	wantCode(t, err, kv.ErrorCode_INVALID_ARGUMENT)
	_, err = s.Delete(ctx, &kv.DeleteRequest{Key: "d", ExpectedVersion: new(int64(99))})
	wantCode(t, err, kv.ErrorCode_VERSION_MISMATCH)
	del, err := s.Delete(ctx, &kv.DeleteRequest{Key: "d", ExpectedVersion: new(int64(3))})
	if err != nil || del.Revision != 4 {
		t.Fatalf("Delete = %+v, %v", del, err)
	}
}

func TestDeleteAll(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	if _, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "zz"}}})
	if ke := wantCode(t, err, kv.ErrorCode_NOT_FOUND); len(ke.Failed) != 1 || ke.Failed[0].Key != "zz" {
		t.Fatalf("failed = %v", ke.Failed)
	}
	resp, err := s.DeleteAll(ctx, &kv.DeleteAllRequest{Mode: kv.WriteMode_BEST_EFFORT,
		Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "zz"}, {Key: "b", ExpectedVersion: new(int64(1))}}})
	if err != nil || resp.Applied != 2 || resp.Revision != 2 ||
		resp.Results[0].Code != kv.ErrorCode_OK || resp.Results[1].Code != kv.ErrorCode_NOT_FOUND || resp.Results[2].Version != 2 {
		t.Fatalf("DeleteAll = %+v, %v", resp, err)
	}
}

// TestResultsLeftOutWhenAllApplied checks that a multi-key write's response carries results
// only when some entry was not applied at the response's revision.
func TestResultsLeftOutWhenAllApplied(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	for _, mode := range []kv.WriteMode{kv.WriteMode_ATOMIC, kv.WriteMode_BEST_EFFORT} {
		resp, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: mode, Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}})
		if err != nil || resp.Applied != 2 || resp.Revision == 0 || resp.Results != nil {
			t.Fatalf("%v PutAll, all applied = %+v, %v; want no results", mode, resp, err)
		}
	}
	resp, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT,
		Entries: []*kv.Entry{entry("a", "2"), {Key: "b", Value: []byte("2"), ExpectedVersion: new(int64(0))}}})
	if err != nil || resp.Applied != 1 || len(resp.Results) != 2 || resp.Results[1].Code != kv.ErrorCode_ALREADY_EXISTS {
		t.Fatalf("BEST_EFFORT PutAll, one refused = %+v, %v; want both results", resp, err)
	}
	del, err := s.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "b"}}})
	if err != nil || del.Applied != 2 || del.Results != nil {
		t.Fatalf("DeleteAll, all applied = %+v, %v; want no results", del, err)
	}
}

func TestIdempotentReplayAndConflict(t *testing.T) {
	s, clock, reg := newTestService(t)
	ctx := context.Background()
	req := &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}, RequestId: new("r1")}
	first, err := s.PutAll(ctx, req)
	if err != nil || first.Replayed {
		t.Fatalf("first = %+v, %v", first, err)
	}
	again, err := s.PutAll(ctx, req)
	if err != nil || !again.Replayed || again.Revision != first.Revision || again.Applied != 2 {
		t.Fatalf("replay = %+v, %v", again, err)
	}
	if rev := s.engine.Stats().Revision; rev != first.Revision {
		t.Fatalf("replay wrote: revision %d after %d", rev, first.Revision)
	}
	other := &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "2"), entry("b", "1")}, RequestId: new("r1")}
	_, err = s.PutAll(ctx, other)
	wantCode(t, err, kv.ErrorCode_IDEMPOTENCY_CONFLICT)
	// The same id on another method is another payload.
	_, err = s.Put(ctx, &kv.PutRequest{Key: "a", Value: []byte("1"), RequestId: new("r1")})
	wantCode(t, err, kv.ErrorCode_IDEMPOTENCY_CONFLICT)

	// A failed precondition is an outcome: replayed, not re-run, even after the key changed.
	cas := &kv.PutRequest{Key: "a", Value: []byte("x"), ExpectedVersion: new(int64(99)), RequestId: new("r2")}
	_, err = s.Put(ctx, cas)
	wantCode(t, err, kv.ErrorCode_VERSION_MISMATCH)
	_, err = s.Put(ctx, cas)
	wantCode(t, err, kv.ErrorCode_VERSION_MISMATCH)

	// After the window the id is forgotten and the call runs again.
	clock.advance(time.Minute)
	fresh, err := s.PutAll(ctx, req)
	if err != nil || fresh.Replayed || fresh.Revision <= first.Revision {
		t.Fatalf("after window = %+v, %v", fresh, err)
	}
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("PutAll", "IDEMPOTENCY_CONFLICT")); n != 1 {
		t.Fatalf("conflict counter = %v", n)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRetriesApplyOnce sends the same request_id from many goroutines at once: one
// call writes, the others wait for it and replay its response.
func TestConcurrentRetriesApplyOnce(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	req := &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "1")}, RequestId: new("same")}
	const callers = 16
	resps := make([]*kv.PutAllResponse, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.PutAll(ctx, req)
			if err != nil {
				t.Error(err)
				return
			}
			resps[i] = r
		}()
	}
	wg.Wait()
	fresh := 0
	for _, r := range resps {
		if r == nil {
			t.FailNow()
		}
		if !r.Replayed {
			fresh++
		}
		if r.Revision != 1 {
			t.Fatalf("revision %d; want 1 for every caller", r.Revision)
		}
	}
	if fresh != 1 || s.engine.Stats().Revision != 1 {
		t.Fatalf("%d callers wrote, store revision %d; want exactly one write", fresh, s.engine.Stats().Revision)
	}
}

func TestWaitingRetryHonoursContext(t *testing.T) {
	s, _, _ := newTestService(t)
	es := oneEntry(write{key: "k"})
	d := digestOf("Put", es.mode, es.n, es.entry)
	rec, _, owner, err := s.idem.begin(&idemKey{method: "Put", id: "slow", digest: d, createdMs: s.now().UnixMilli()})
	if err != nil || !owner {
		t.Fatal(owner, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = idempotent(ctx, s, "Put", "slow", es,
		func(*idemKey) (*kv.PutResponse, error) {
			t.Error("ran while the first call was in flight")
			return nil, nil
		})
	wantCode(t, err, kv.ErrorCode_UNAVAILABLE)
	// A transient outcome is not kept: the next call runs for real.
	s.idem.finish(rec, nil, kvError(kv.ErrorCode_UNAVAILABLE, "down"), es.n, es.key)
	ran := false
	_, err = idempotent(context.Background(), s, "Put", "slow", es,
		func(*idemKey) (*kv.PutResponse, error) { ran = true; return &kv.PutResponse{}, nil })
	if err != nil || !ran {
		t.Fatalf("after a transient outcome: ran %v, err %v", ran, err)
	}
}

func TestMetrics(t *testing.T) {
	s, _, reg := newTestService(t)
	ctx := context.Background()
	if _, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}}); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Get(ctx, &kv.GetRequest{Key: "zz"})
	_, _ = s.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"a", "b", "c"}})
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("Get", "NOT_FOUND")); n != 1 {
		t.Errorf("Get NOT_FOUND counter = %v", n)
	}
	for _, c := range []struct {
		method, code string
		want         float64
	}{{"PutAll", "OK", 2}, {"Get", "NOT_FOUND", 1}, {"GetAll", "OK", 3}} {
		if n := testutil.ToFloat64(s.metrics.keys.WithLabelValues(c.method, c.code)); n != c.want {
			t.Errorf("putallkv_kv_keys_total{%s,%s} = %v; want %v", c.method, c.code, n, c.want)
		}
	}
	for name, want := range map[string]int{"putallkv_putall_batch_size": 1, "putallkv_putall_latency_seconds": 1, "putallkv_store_keys": 1, "putallkv_store_revision": 1, "putallkv_kv_requests_total": 3, "putallkv_kv_keys_total": 3} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != want {
			t.Errorf("%s: %d series, %v; want %d", name, n, err, want)
		}
	}
}
