package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// TestScanAcrossNodes scans keys spread over many hash slots through two stateless nodes,
// alternating them page by page: a cursor one node made carries on at the other, and every key
// comes exactly once.
func TestScanAcrossNodes(t *testing.T) {
	a, b := node(t, false), node(t, true)
	ctx := context.Background()
	prefix := fmt.Sprintf("scan-%d/", time.Now().UnixNano())
	entries := make([]*kv.Entry, 300)
	for i := range entries {
		entries[i] = &kv.Entry{Key: fmt.Sprintf("%s%03d", prefix, i), Value: []byte{byte(i)}}
	}
	if _, err := a.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: entries}); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]int)
	req := &kv.ScanRequest{Prefix: prefix, Limit: 40}
	for page := 0; ; page++ {
		via := a
		if page%2 == 1 {
			via = b
		}
		resp, err := via.Scan(ctx, req)
		if err != nil || len(resp.Items) > 40 {
			t.Fatalf("page %d: %d items, %v", page, len(resp.GetItems()), err)
		}
		for _, it := range resp.Items {
			seen[it.Key]++
		}
		if resp.NextCursor == "" {
			break
		}
		req.Cursor = resp.NextCursor
	}
	for _, e := range entries {
		if seen[e.Key] != 1 {
			t.Errorf("key %q returned %d times", e.Key, seen[e.Key])
		}
	}
	if len(seen) != len(entries) {
		t.Errorf("%d keys scanned, want %d", len(seen), len(entries))
	}
}
