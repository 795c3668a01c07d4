package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// quotaService is a service over a memory store whose quota holds exactly keys keys of one
// byte with one-byte values.
func quotaService(t *testing.T, keys int64) (*Service, *prometheus.Registry) {
	t.Helper()
	clock := &testClock{}
	engine, err := store.NewMemory(store.Options{Shards: 4, Now: clock.now, MaxBytes: keys * (2 + store.KeyOverhead)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	reg := prometheus.NewRegistry()
	s, err := New(engine, Options{Limits: Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxBatchEntries: 100},
		IdempotencyWindow: time.Minute, Registerer: reg, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func TestQuotaRefusalIsResourceExhausted(t *testing.T) {
	s, reg := quotaService(t, 3)
	ctx := context.Background()
	if _, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{entry("a", "1"), entry("b", "1")}}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []kv.WriteMode{kv.WriteMode_ATOMIC, kv.WriteMode_BEST_EFFORT} {
		_, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: mode, Entries: []*kv.Entry{entry("c", "1"), entry("d", "1")}})
		ke := wantCode(t, err, kv.ErrorCode_RESOURCE_EXHAUSTED)
		if !strings.Contains(ke.Message, "store.max_bytes") || ke.RetryAfterMs != 0 {
			t.Fatalf("%v refusal %q (retry_after_ms %d); want it to name store.max_bytes, with no retry-after", mode, ke.Message, ke.RetryAfterMs)
		}
	}
	// A refusal is transient to idempotency: once there is room, the retry runs for real.
	put := &kv.PutRequest{Key: "c", Value: []byte("12"), RequestId: new("c-1")}
	_, err := s.Put(ctx, put)
	wantCode(t, err, kv.ErrorCode_RESOURCE_EXHAUSTED)
	if _, err := s.Get(ctx, &kv.GetRequest{Key: "a"}); err != nil {
		t.Fatalf("a read over the quota: %v", err)
	}
	if _, err := s.Delete(ctx, &kv.DeleteRequest{Key: "a"}); err != nil {
		t.Fatalf("a delete at the quota: %v", err)
	}
	if resp, err := s.Put(ctx, put); err != nil || resp.Replayed || !resp.Created {
		t.Fatalf("retry after a delete made room = %+v, %v; want a fresh write", resp, err)
	}
	for name, want := range map[string]float64{
		"putallkv_store_bytes":                2*(2+store.KeyOverhead) + 1,
		"putallkv_store_max_bytes":            3 * (2 + store.KeyOverhead),
		"putallkv_store_quota_refusals_total": 3,
	} {
		if got := gauge(t, reg, name); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
}

// TestQuotaStopsChunkedBestEffort: a BEST_EFFORT call that admission splits into chunks and
// that reaches the quota part way answers like one that ran out of tokens: what applied is OK,
// the rest RESOURCE_EXHAUSTED, and the call is not an error.
func TestQuotaStopsChunkedBestEffort(t *testing.T) {
	s, _ := quotaService(t, 6)
	s.SetAdmission(AdmissionSettings{Rate: 1000, Burst: 100, MaxWait: 0, MaxChunk: 4})
	resp, err := s.PutAll(context.Background(), &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: entries("", 10)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Applied != 4 || len(resp.Results) != 10 {
		t.Fatalf("applied %d of %d results; want the first chunk of 4", resp.Applied, len(resp.Results))
	}
	for i, r := range resp.Results {
		if want := map[bool]kv.ErrorCode{true: kv.ErrorCode_OK, false: kv.ErrorCode_RESOURCE_EXHAUSTED}[i < 4]; r.Code != want {
			t.Errorf("result %d = %v; want %v", i, r.Code, want)
		}
	}
	// The whole call refused at its first chunk is an error, as unchunked.
	_, err = s.PutAll(context.Background(), &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: entries("x", 4)})
	wantCode(t, err, kv.ErrorCode_RESOURCE_EXHAUSTED)
}
