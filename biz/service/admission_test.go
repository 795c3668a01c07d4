package service

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// limitedService is a test service whose bucket refills at 1000 keys/s with a burst of 10, and
// never waits (max_wait 0), so every outcome follows from the fake clock alone.
func limitedService(t *testing.T, maxChunk int) (*Service, *testClock) {
	t.Helper()
	s, clock, _ := newTestService(t)
	s.limits.MaxBatchEntries = 100
	s.SetAdmission(AdmissionSettings{Rate: 1000, Burst: 10, MaxWait: 0, MaxChunk: maxChunk})
	return s, clock
}

func entries(prefix string, n int) []*kv.Entry {
	es := make([]*kv.Entry, n)
	for i := range es {
		es[i] = entry(fmt.Sprintf("%s%d", prefix, i), "v")
	}
	return es
}

func TestAtomicAdmission(t *testing.T) {
	s, clock := limitedService(t, 10)
	ctx := context.Background()

	_, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: entries("big", 11)})
	if ke := wantCode(t, err, kv.ErrorCode_TOO_LARGE); !strings.Contains(ke.Message, "largest admissible batch is 10") {
		t.Fatalf("message %q does not name the largest batch", ke.Message)
	}
	resp, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: entries("a", 10)})
	if err != nil || resp.Applied != 10 {
		t.Fatalf("burst-sized batch: %+v, %v", resp, err)
	}
	if resp.SuggestedBatch != 10 { // empty bucket: what refills in 10ms at 1000/s
		t.Errorf("suggested_batch = %d; want 10", resp.SuggestedBatch)
	}
	_, err = s.PutAll(ctx, &kv.PutAllRequest{Entries: entries("b", 4)})
	if ke := wantCode(t, err, kv.ErrorCode_RESOURCE_EXHAUSTED); ke.RetryAfterMs != 4 {
		t.Fatalf("retry_after_ms = %d; want 4 (4 tokens at 1000/s)", ke.RetryAfterMs)
	}
	got, _ := s.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"b0", "b3"}})
	if got.Items[0].Found || got.Items[1].Found {
		t.Fatal("a refused atomic batch wrote")
	}
	// Reads are not admitted by the bucket.
	if _, err := s.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"a0"}}); err != nil {
		t.Fatal(err)
	}
	// Single-key writes take one token each.
	clock.advance(2_000_000) // 2ms: 2 tokens
	for i := range 2 {
		if _, err := s.Put(ctx, &kv.PutRequest{Key: fmt.Sprint("p", i), Value: []byte("v")}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	_, err = s.Put(ctx, &kv.PutRequest{Key: "p2", Value: []byte("v")})
	wantCode(t, err, kv.ErrorCode_RESOURCE_EXHAUSTED)
	if n := testutil.ToFloat64(s.metrics.limiterRejected.WithLabelValues("single")); n != 1 {
		t.Errorf("putallkv_limiter_rejected_total{mode=single} = %v", n)
	}
}

func TestBestEffortChunksByTokens(t *testing.T) {
	s, clock := limitedService(t, 4)
	ctx := context.Background()
	req := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: entries("k", 25)}
	resp, err := s.PutAll(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// 10 tokens in hand, chunks of at most 4: 4 + 4 + 2 applied, the other 15 refused.
	if resp.Applied != 10 || resp.RetryAfterMs != 1 {
		t.Fatalf("applied %d, retry_after_ms %d; want 10 and 1", resp.Applied, resp.RetryAfterMs)
	}
	if n := testutil.CollectAndCount(s.metrics.chunkSize); n != 1 {
		t.Fatalf("chunk histogram series = %d", n)
	}
	var rest []*kv.Entry
	for i, r := range resp.Results {
		switch {
		case i < 10 && r.Code != kv.ErrorCode_OK:
			t.Fatalf("result %d = %v; want OK", i, r)
		case i >= 10 && (r.Code != kv.ErrorCode_RESOURCE_EXHAUSTED || r.Version != 0):
			t.Fatalf("result %d = %v; want RESOURCE_EXHAUSTED", i, r)
		case i >= 10:
			rest = append(rest, req.Entries[i])
		}
	}
	// Three chunks, three revisions: the response names the last.
	if resp.Results[0].Version != 1 || resp.Results[4].Version != 2 || resp.Results[9].Version != 3 || resp.Revision != 3 {
		t.Fatalf("chunk revisions %d %d %d, response %d", resp.Results[0].Version, resp.Results[4].Version, resp.Results[9].Version, resp.Revision)
	}
	// Resending exactly the rest, as tokens refill, writes everything once.
	for len(rest) > 0 {
		clock.advance(5_000_000) // 5ms: 5 tokens
		r, err := s.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: rest})
		if err != nil {
			t.Fatal(err)
		}
		var next []*kv.Entry
		for i, st := range r.Results {
			if st.Code == kv.ErrorCode_RESOURCE_EXHAUSTED {
				next = append(next, rest[i])
			} else if st.Code != kv.ErrorCode_OK {
				t.Fatalf("resend: %v", st)
			}
		}
		if len(next) == len(rest) {
			t.Fatal("no progress after refill")
		}
		rest = next
	}
	keys := make([]string, 25)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	got, _ := s.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	for _, it := range got.Items {
		if !it.Found {
			t.Fatalf("%s never written", it.Key)
		}
	}
	if st := s.engine.Stats(); st.Keys != 25 {
		t.Fatalf("store holds %d keys; want 25", st.Keys)
	}
}

func TestBestEffortDuplicateAcrossChunks(t *testing.T) {
	s, _ := limitedService(t, 2)
	es := entries("d", 5)
	es[4] = entry("d0", "again")
	_, err := s.PutAll(context.Background(), &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: es})
	if ke := wantCode(t, err, kv.ErrorCode_INVALID_ARGUMENT); ke.Failed[0].Key != "d0" {
		t.Fatalf("failed = %v", ke.Failed)
	}
	if s.engine.Stats().Keys != 0 {
		t.Fatal("a batch with a repeated key wrote")
	}
}

func TestUnlimitedSuggestsMaxBatch(t *testing.T) {
	s, _, _ := newTestService(t)
	resp, err := s.Put(context.Background(), &kv.PutRequest{Key: "k", Value: []byte("v")})
	if err != nil || resp.SuggestedBatch != int32(testLimits.MaxBatchEntries) {
		t.Fatalf("Put = %+v, %v; want suggested_batch %d", resp, err, testLimits.MaxBatchEntries)
	}
}

// TestRepeatedKeyTakesNoTokens checks that an ATOMIC batch repeating a key is refused before
// admission: it takes no tokens, so a burst-sized batch right after it is still admitted.
// (Before, the store refused it after its tokens were spent, and the next batch was refused
// RESOURCE_EXHAUSTED.)
func TestRepeatedKeyTakesNoTokens(t *testing.T) {
	s, _ := limitedService(t, 10)
	ctx := context.Background()
	repeated := append(entries("r", 9), entry("r3", "again"))
	for _, mode := range []kv.WriteMode{kv.WriteMode_ATOMIC, kv.WriteMode_BEST_EFFORT} {
		_, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: repeated, Mode: mode})
		if ke := wantCode(t, err, kv.ErrorCode_INVALID_ARGUMENT); !strings.Contains(ke.Message, `"r3"`) {
			t.Fatalf("%v: message %q does not name the repeated key r3", mode, ke.Message)
		}
	}
	if resp, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: entries("a", 10)}); err != nil || resp.Applied != 10 {
		t.Fatalf("a burst-sized batch after the refusals: %+v, %v; want all 10 admitted", resp, err)
	}
}
