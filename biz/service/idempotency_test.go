package service

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// newIdemService is a service over a memory store with its own limits and idempotency bound.
func newIdemService(t *testing.T, limits Limits, maxBytes int64) (*Service, *testClock, *prometheus.Registry) {
	t.Helper()
	clock := &testClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	engine, err := store.NewMemory(store.Options{Shards: 8, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	reg := prometheus.NewRegistry()
	s, err := New(engine, Options{Limits: limits, IdempotencyWindow: time.Minute, IdempotencyMaxBytes: maxBytes,
		Registerer: reg, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, clock, reg
}

// gauge reads the one sample of the metric name from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC() // the second also frees what the first left to finalizers and sync.Pools
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestFloodOfIdempotencyKeysKeepsRecordsInWindow: another client's flood of 100 100 distinct
// request_ids (which evicted the first record when records were bounded by count) leaves a
// record inside its window alone while the byte bound has room, so its retry is replayed and
// not applied twice.
func TestFloodOfIdempotencyKeysKeepsRecordsInWindow(t *testing.T) {
	s, _, reg := newTestService(t) // window 1m, the default byte bound
	ctx := context.Background()
	mine := &kv.PutRequest{Key: "counter", Value: []byte("1"), RequestId: new("client-a/1")}
	first, err := s.Put(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	const flood = 100_100
	for i := range flood {
		id := fmt.Sprintf("client-b/%d", i)
		if _, err := s.Put(ctx, &kv.PutRequest{Key: "b", Value: []byte("v"), RequestId: &id}); err != nil {
			t.Fatal(err)
		}
	}
	again, err := s.Put(ctx, mine)
	if err != nil || !again.Replayed || again.Version != first.Version {
		t.Fatalf("retry after %d other request_ids = %+v, %v; want a replay of version %d", flood, again, err, first.Version)
	}
	if n := gauge(t, reg, "putallkv_idempotency_records"); n != flood+1 {
		t.Errorf("putallkv_idempotency_records = %v; want %d", n, flood+1)
	}
	if n := gauge(t, reg, "putallkv_idempotency_evictions_total"); n != 0 {
		t.Errorf("putallkv_idempotency_evictions_total = %v; want 0 while the bound has room", n)
	}
	if b := gauge(t, reg, "putallkv_idempotency_bytes"); b <= 0 || b > gauge(t, reg, "putallkv_idempotency_max_bytes") {
		t.Errorf("putallkv_idempotency_bytes = %v; want within the bound", b)
	}
}

// TestByteBoundEvictsOldestAndCountsIt: when a record would cross the byte bound the oldest
// goes, inside its window, and the eviction is counted; records whose window is over are
// dropped without counting.
func TestByteBoundEvictsOldestAndCountsIt(t *testing.T) {
	const records = 10
	s, clock, reg := newIdemService(t, testLimits, records*(recordBytes+int64(len("id-00"))))
	ctx := context.Background()
	put := func(i int) *kv.PutResponse {
		t.Helper()
		id := fmt.Sprintf("id-%02d", i)
		resp, err := s.Put(ctx, &kv.PutRequest{Key: id, Value: []byte("v"), RequestId: &id})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range records {
		put(i)
	}
	if n := gauge(t, reg, "putallkv_idempotency_evictions_total"); n != 0 {
		t.Fatalf("evictions = %v with the bound exactly full; want 0", n)
	}
	put(records) // one over: id-00 goes
	if n := gauge(t, reg, "putallkv_idempotency_evictions_total"); n != 1 {
		t.Fatalf("evictions = %v; want 1", n)
	}
	if r := put(records); !r.Replayed {
		t.Fatalf("the newest record was not replayed: %+v", r)
	}
	// The evicted call runs again (the key exists now, so it is a replace), evicting id-01.
	if r := put(0); r.Replayed || r.Created {
		t.Fatalf("retry of an evicted record = %+v; want a fresh write that replaced the key", r)
	}
	if n := gauge(t, reg, "putallkv_idempotency_evictions_total"); n != 2 {
		t.Fatalf("evictions = %v; want 2", n)
	}
	if b, max := gauge(t, reg, "putallkv_idempotency_bytes"), gauge(t, reg, "putallkv_idempotency_max_bytes"); b > max {
		t.Fatalf("putallkv_idempotency_bytes %v over the bound %v", b, max)
	}
	clock.advance(time.Minute) // every window is over: dropped, not evicted
	put(50)
	if n := gauge(t, reg, "putallkv_idempotency_evictions_total"); n != 2 {
		t.Fatalf("evictions = %v after expiry; want still 2", n)
	}
	if n := gauge(t, reg, "putallkv_idempotency_records"); n != 1 {
		t.Fatalf("records = %v after expiry; want 1", n)
	}
}

// failingAtomicCall is an ATOMIC PutAll of 1000 keys of about 1 KiB that all fail their
// precondition, so it writes nothing and its record keeps every failing key's outcome.
func failingAtomicCall(id string) *kv.PutAllRequest {
	entries := make([]*kv.Entry, 1000)
	for j := range entries {
		entries[j] = &kv.Entry{Key: fmt.Sprintf("%s/%04d/%s", id, j, strings.Repeat("k", 1000)), Value: []byte("v"),
			ExpectedVersion: new(int64(7))}
	}
	return &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: entries, RequestId: &id}
}

// TestFailingAtomicCallsStayWithinTheBound: records of big failing ATOMIC calls used to keep
// the whole error, every key in it (1 MB a call: 1200 calls put 1.2 GB on the heap with nothing
// written). Now a record keeps 16 bytes per failing key, and the records' bytes, counted so
// that they cover the heap, stay within the bound: 64 such calls grow the heap by about the
// 1 MiB bound, where they grew it by 68 MB.
func TestFailingAtomicCallsStayWithinTheBound(t *testing.T) {
	const bound = 1 << 20
	s, _, reg := newIdemService(t, Limits{MaxKeyBytes: 1100, MaxValueBytes: 16, MaxBatchEntries: 1000}, bound)
	ctx := context.Background()
	const calls = 64
	before := heapInUse()
	for i := range calls {
		_, err := s.PutAll(ctx, failingAtomicCall(fmt.Sprintf("call-%02d", i)))
		wantCode(t, err, kv.ErrorCode_VERSION_MISMATCH)
	}
	grown := heapInUse() - before
	t.Logf("heap grew %d bytes over %d failing calls (bound %d); putallkv_idempotency_bytes %v", grown, calls, bound,
		gauge(t, reg, "putallkv_idempotency_bytes"))
	if grown > 2*bound {
		t.Fatalf("heap grew %d bytes; want about the %d-byte bound", grown, bound)
	}
	if b := gauge(t, reg, "putallkv_idempotency_bytes"); b > bound {
		t.Fatalf("putallkv_idempotency_bytes = %v; over the bound %d", b, bound)
	}
	if n := gauge(t, reg, "putallkv_idempotency_evictions_total"); n == 0 {
		t.Fatal("no eviction counted, but the calls' records cannot all fit")
	}
	// The newest are kept, and replay the failure exactly.
	req := failingAtomicCall(fmt.Sprintf("call-%02d", calls-1))
	_, first := s.PutAll(ctx, req) // a replay: nothing was written in between
	_, again := s.PutAll(ctx, req)
	if !reflect.DeepEqual(first, again) || len(wantCode(t, again, kv.ErrorCode_VERSION_MISMATCH).Failed) != 1000 {
		t.Fatalf("replays differ or lost keys:\n%v\n%v", first, again)
	}
}

// TestReplayRebuildsTheFirstAnswer: a record keeps no key, and every kind of kept outcome is
// rebuilt from it and the retry's entries exactly as the first call answered.
func TestReplayRebuildsTheFirstAnswer(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	if _, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{entry("x", "1"), entry("y", "1")}}); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		run  func() (any, error)
	}{
		{"Put", func() (any, error) {
			return s.Put(ctx, &kv.PutRequest{Key: "p", Value: []byte("v"), TtlMs: new(int64(1000)), RequestId: new("put")})
		}},
		{"Put failed", func() (any, error) {
			return s.Put(ctx, &kv.PutRequest{Key: "x", Value: []byte("v"), ExpectedVersion: new(int64(0)), RequestId: new("put-failed")})
		}},
		{"Delete failed", func() (any, error) {
			return s.Delete(ctx, &kv.DeleteRequest{Key: "nope", RequestId: new("delete-failed")})
		}},
		{"PutAll ATOMIC failed", func() (any, error) {
			return s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, RequestId: new("atomic-failed"), Entries: []*kv.Entry{
				entry("a", "1"), {Key: "x", Value: []byte("2"), ExpectedVersion: new(int64(0))}, entry("b", "1"),
				{Key: "y", Value: []byte("2"), ExpectedVersion: new(int64(42))}}})
		}},
		{"PutAll BEST_EFFORT", func() (any, error) {
			return s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("best-effort"), Entries: []*kv.Entry{
				entry("c", "1"), {Key: "x", Value: []byte("2"), ExpectedVersion: new(int64(0))}, entry("d", "1")}})
		}},
		{"DeleteAll BEST_EFFORT", func() (any, error) {
			return s.DeleteAll(ctx, &kv.DeleteAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("delete-all"),
				Entries: []*kv.DeleteEntry{{Key: "nope"}, {Key: "c"}}})
		}},
	}
	for _, c := range calls {
		first, firstErr := c.run()
		again, againErr := c.run()
		if !reflect.DeepEqual(firstErr, againErr) {
			t.Errorf("%s: replayed error\n%v\nfirst\n%v", c.name, againErr, firstErr)
			continue
		}
		if firstErr != nil {
			continue
		}
		// The replay differs from the first answer in replayed alone.
		reflect.ValueOf(again).MethodByName("SetReplayed").Call([]reflect.Value{reflect.ValueOf(false)})
		if !reflect.DeepEqual(first, again) {
			t.Errorf("%s: replay %+v; first %+v", c.name, again, first)
		}
	}
}

// TestIdempotencyCostCoversHeap: what the records count against idempotency.max_bytes is at
// least what they hold on the heap, so the bound bounds the memory.
func TestIdempotencyCostCoversHeap(t *testing.T) {
	for _, n := range []int{3000, 20_000} {
		s, _, reg := newIdemService(t, testLimits, 1<<40)
		ctx := context.Background()
		ids := make([]string, 3*n) // made before measuring: the request's own id is not the record's
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%08d", strings.Repeat("r", i%64), i)
		}
		before := heapInUse()
		for i := range n {
			_, err := s.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(9)), RequestId: &ids[3*i]})
			wantCode(t, err, kv.ErrorCode_VERSION_MISMATCH)
			if _, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: &ids[3*i+1],
				Entries: []*kv.Entry{{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(9))}, {Key: "l", Value: []byte("v"), ExpectedVersion: new(int64(9))}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, RequestId: &ids[3*i+2],
				Entries: []*kv.Entry{{Key: "m", Value: []byte("v"), ExpectedVersion: new(int64(9))}}}); err == nil {
				t.Fatal("a failing precondition passed")
			}
		}
		heap := heapInUse() - before
		counted := int64(gauge(t, reg, "putallkv_idempotency_bytes"))
		t.Logf("%d records: %d bytes on the heap (%d a record), %d counted", 3*n, heap, heap/int64(3*n), counted)
		if heap > counted || heap < counted/2 {
			t.Errorf("%d records hold %d bytes of heap and count %d; want the count to cover the heap, and not by twice", 3*n, heap, counted)
		}
		runtime.KeepAlive(s)
	}
}
