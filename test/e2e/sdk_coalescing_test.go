package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// TestE2ECoalescedPutAll drives the real server from many goroutines through a coalescing
// client: every call gets its own outcome at its own revision (a failed precondition fails
// that call alone, a retried request_id is replayed), what each call wrote is there, and the
// server did get PutAllMany round trips.
func TestE2ECoalescedPutAll(t *testing.T) {
	a, plain := startTestServer(t, testConfig(t))
	c := newClient(t, a.RPCAddr(), kvclient.WithCoalescing(2))

	const callers, calls = 16, 30
	type written struct {
		keys     []string
		revision int64
	}
	var (
		mu      sync.Mutex
		ok      []written
		refused []string
		wg      sync.WaitGroup
	)
	ctx := context.Background()
	for i := range callers {
		wg.Go(func() {
			for j := range calls {
				req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC}
				for k := range 4 {
					req.Entries = append(req.Entries, &kv.Entry{Key: fmt.Sprintf("c%d/%d/%d", i, j, k), Value: []byte(strconv.Itoa(j))})
				}
				fails := j%7 == 3
				if fails { // the key is absent: version 1 000 000 cannot match
					req.Entries[2].ExpectedVersion = new(int64(1_000_000))
				}
				if j%5 == 0 {
					req.RequestId = new(fmt.Sprintf("c%d/%d", i, j))
				}
				resp, err := c.PutAll(ctx, req)
				if fails {
					if !errors.Is(err, kvclient.ErrVersionMismatch) {
						t.Errorf("c%d/%d: err = %v; want VERSION_MISMATCH", i, j, err)
					}
					mu.Lock()
					refused = append(refused, req.Entries[0].Key)
					mu.Unlock()
					continue
				}
				if err != nil || resp.Applied != 4 || resp.Revision <= 0 {
					t.Errorf("c%d/%d: %+v, %v", i, j, resp, err)
					continue
				}
				if req.RequestId != nil {
					again, err := c.PutAll(ctx, req)
					if err != nil || !again.Replayed || again.Revision != resp.Revision {
						t.Errorf("c%d/%d retried: %+v, %v; want a replay at revision %d", i, j, again, err, resp.Revision)
					}
				}
				keys := make([]string, len(req.Entries))
				for k, e := range req.Entries {
					keys[k] = e.Key
				}
				mu.Lock()
				ok = append(ok, written{keys, resp.Revision})
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	seen := map[int64]bool{}
	for _, w := range ok {
		if seen[w.revision] {
			t.Fatalf("two calls answered with revision %d", w.revision)
		}
		seen[w.revision] = true
		got, err := plain.GetAll(ctx, &kv.GetAllRequest{Keys: w.keys})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range got.Items {
			if !it.Found || it.Version != w.revision {
				t.Errorf("%s = %+v; want version %d", it.Key, it, w.revision)
			}
		}
	}
	got, err := plain.GetAll(ctx, &kv.GetAllRequest{Keys: refused[:min(len(refused), 100)]})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got.Items {
		if it.Found {
			t.Errorf("%s of a refused ATOMIC call was written: %+v", it.Key, it)
		}
	}
	if n := metric(t, scrape(t, a), `putallkv_kv_requests_total{code="OK",method="PutAllMany"}`); n == 0 {
		t.Error("the server answered no PutAllMany: nothing was coalesced")
	}
}
