package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// TestScanPagesAndMetrics follows a scan page by page: every key once, pages within the limit,
// and the calls and keys counted under Scan.
func TestScanPagesAndMetrics(t *testing.T) {
	s, _, _ := newTestService(t)
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Put(ctx, &kv.PutRequest{Key: fmt.Sprintf("s/%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	seen, calls := map[string]bool{}, 0
	req := &kv.ScanRequest{Prefix: "s/", Limit: 3}
	for {
		resp, err := s.Scan(ctx, req)
		calls++
		if err != nil || len(resp.Items) > 3 {
			t.Fatalf("page %d: %+v, %v", calls, resp, err)
		}
		for _, it := range resp.Items {
			if seen[it.Key] || !it.Found {
				t.Fatalf("item %+v repeated or not found", it)
			}
			seen[it.Key] = true
		}
		if resp.NextCursor == "" {
			break
		}
		req.Cursor = resp.NextCursor
	}
	if len(seen) != 10 {
		t.Fatalf("%d keys scanned, want 10", len(seen))
	}
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("Scan", "OK")); n != float64(calls) {
		t.Errorf("Scan calls counted %v, want %d", n, calls)
	}
	if n := testutil.ToFloat64(s.metrics.keys.WithLabelValues("Scan", "OK")); n != 10 {
		t.Errorf("Scan keys counted %v, want 10", n)
	}
	_, err := s.Scan(ctx, &kv.ScanRequest{Limit: -1})
	wantCode(t, err, kv.ErrorCode_INVALID_ARGUMENT)
	if n := testutil.ToFloat64(s.metrics.requests.WithLabelValues("Scan", "INVALID_ARGUMENT")); n != 1 {
		t.Errorf("refused Scan calls counted %v, want 1", n)
	}
}

// FuzzScanCursor sends Scan any prefix, cursor and limit: it answers a page or INVALID_ARGUMENT,
// never another error or a panic, and a cursor it accepted resumes a scan of that prefix.
func FuzzScanCursor(f *testing.F) {
	engine, err := store.NewMemory(store.Options{Shards: 4})
	if err != nil {
		f.Fatal(err)
	}
	defer engine.Close()
	s, err := New(engine, Options{Limits: testLimits, IdempotencyWindow: time.Minute})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for i := range 20 {
		if _, err := s.Put(ctx, &kv.PutRequest{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}); err != nil {
			f.Fatal(err)
		}
	}
	page, err := s.Scan(ctx, &kv.ScanRequest{Limit: 5})
	if err != nil || page.NextCursor == "" {
		f.Fatalf("first page: %+v, %v", page, err)
	}
	f.Add("", page.NextCursor, int32(5))
	f.Add("k", page.NextCursor, int32(0))
	f.Add("", page.NextCursor[:len(page.NextCursor)-1], int32(1))
	f.Add("k1", "AQ", int32(1001))
	f.Fuzz(func(t *testing.T, prefix, cursor string, limit int32) {
		resp, err := s.Scan(ctx, &kv.ScanRequest{Prefix: prefix, Cursor: cursor, Limit: limit})
		var ke *kv.KVError
		switch {
		case errors.As(err, &ke) && ke.Code == kv.ErrorCode_INVALID_ARGUMENT:
		case err != nil:
			t.Fatalf("Scan(%q, %q, %d): %v; want a page or INVALID_ARGUMENT", prefix, cursor, limit, err)
		case resp.NextCursor != "":
			if _, err := s.Scan(ctx, &kv.ScanRequest{Prefix: prefix, Cursor: resp.NextCursor, Limit: limit}); err != nil {
				t.Fatalf("the cursor of Scan(%q, %q, %d) does not resume: %v", prefix, cursor, limit, err)
			}
		}
	})
}

// TestScanSnapshot pages a snapshot scan while its keys are rewritten: every page shows the cut's
// revision and values; the cut is dropped at the last page, refused once idle too long, and at
// most maxOpenCuts are open at once.
func TestScanSnapshot(t *testing.T) {
	s, clock, _ := newTestService(t)
	ctx := context.Background()
	put := func(v string) {
		t.Helper()
		for i := range 10 {
			if _, err := s.Put(ctx, &kv.PutRequest{Key: fmt.Sprintf("s/%d", i), Value: []byte(v)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	put("old")
	req := &kv.ScanRequest{Prefix: "s/", Limit: 3, Snapshot: true}
	first, err := s.Scan(ctx, req)
	if err != nil || first.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	put("new")
	n := len(first.Items)
	for req.Cursor = first.NextCursor; req.Cursor != ""; {
		resp, err := s.Scan(ctx, &kv.ScanRequest{Prefix: "s/", Limit: 3, Cursor: req.Cursor}) // the cursor carries the snapshot
		if err != nil || resp.Revision != first.Revision {
			t.Fatalf("page at revision %d (cut at %d): %v", resp.GetRevision(), first.Revision, err)
		}
		for _, it := range resp.Items {
			if string(it.Value) != "old" || it.Version > first.Revision {
				t.Fatalf("item %+v written after the cut at %d", it, first.Revision)
			}
		}
		n += len(resp.Items)
		req.Cursor = resp.NextCursor
	}
	if n != 10 || len(s.cuts.cuts) != 0 {
		t.Fatalf("%d keys in the snapshot, %d cuts still open; want 10 and none", n, len(s.cuts.cuts))
	}

	var cursors []string
	for range maxOpenCuts {
		resp, err := s.Scan(ctx, &kv.ScanRequest{Limit: 1, Snapshot: true})
		if err != nil {
			t.Fatal(err)
		}
		cursors = append(cursors, resp.NextCursor)
	}
	_, err = s.Scan(ctx, &kv.ScanRequest{Limit: 1, Snapshot: true})
	wantCode(t, err, kv.ErrorCode_RESOURCE_EXHAUSTED)
	clock.advance(cutIdle + time.Second)
	_, err = s.Scan(ctx, &kv.ScanRequest{Limit: 1, Cursor: cursors[0]})
	if e := wantCode(t, err, kv.ErrorCode_INVALID_ARGUMENT); !strings.Contains(e.Message, "start the scan again") {
		t.Errorf("an idle snapshot's cursor: %q", e.Message)
	}
	if _, err := s.Scan(ctx, &kv.ScanRequest{Limit: 1, Snapshot: true}); err != nil {
		t.Errorf("a snapshot scan once the others were idle: %v", err)
	}
}
