package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// fillToQuota writes batches of 1 KiB values over RPC until the store refuses one for its
// quota, and returns the keys written and the refusal.
func fillToQuota(t *testing.T, c *kvclient.Client) ([]string, *kvclient.Error) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for b := range 100 { // 100 KiB, well over the test's quota
		req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC}
		for i := range 8 {
			req.Entries = append(req.Entries, &kv.Entry{Key: fmt.Sprintf("fill/%03d/%d", b, i), Value: make([]byte, 1024)})
		}
		if _, err := c.PutAll(ctx, req); err != nil {
			return keys, wantErr(t, err, kvclient.ErrResourceExhausted)
		}
		for _, e := range req.Entries {
			keys = append(keys, e.Key)
		}
	}
	t.Fatal("100 KiB written under a quota of 32 KiB")
	return nil, nil
}

// TestE2EMemoryQuota fills a store to store.max_bytes through the real Kitex client, for the
// memory and the durable engine: a write that would cross the quota is refused
// RESOURCE_EXHAUSTED with a sentence over RPC and 429 with a problem over HTTP; reads and
// deletes still work, and a delete makes room again; the metrics show it. Where the store is
// durable, a restart with a lower quota restores the count, starts, and refuses writes.
func TestE2EMemoryQuota(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "durable"}[durable], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Store.MaxBytes = 32 << 10
			if durable {
				cfg.Store.DataDir = t.TempDir()
			}
			a, err := server.Start(cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			c, err := kvclient.New([]string{a.RPCAddr()}, kvclient.WithRPCTimeout(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once // this first server stops here, before a restart, or when the test fails
			shutdown := func() {
				once.Do(func() {
					_ = c.Close()
					testnet.Stop(t, a)
				})
			}
			t.Cleanup(shutdown)
			keys, refusal := fillToQuota(t, c)
			if !strings.Contains(refusal.Message, "store.max_bytes") || refusal.RetryAfter != 0 {
				t.Fatalf("refusal %q (retry after %v); want a sentence naming store.max_bytes", refusal.Message, refusal.RetryAfter)
			}
			checkQuotaOverHTTP(t, a, c, keys)
			page := scrape(t, a)
			used := metric(t, page, "putallkv_store_bytes")
			if used > 32<<10 || metric(t, page, "putallkv_store_max_bytes") != 32<<10 || metric(t, page, "putallkv_store_quota_refusals_total") < 3 {
				t.Fatalf("quota metrics: putallkv_store_bytes %.0f, putallkv_store_max_bytes %.0f, refusals %.0f", used,
					metric(t, page, "putallkv_store_max_bytes"), metric(t, page, "putallkv_store_quota_refusals_total"))
			}
			shutdown()
			if !durable {
				return
			}

			// Restarted with a quota below what the store holds: it starts with every key.
			cfg.Store.MaxBytes = 16 << 10
			again, c2 := startTestServer(t, cfg)
			page = scrape(t, again)
			if got := metric(t, page, "putallkv_store_bytes"); got != used {
				t.Fatalf("putallkv_store_bytes after restart = %.0f; want %.0f", got, used)
			}
			_, err = c2.Put(context.Background(), &kv.PutRequest{Key: "more", Value: []byte("x")})
			wantErr(t, err, kvclient.ErrResourceExhausted)
			if _, err := c2.Delete(context.Background(), &kv.DeleteRequest{Key: keys[len(keys)-1]}); err != nil {
				t.Fatalf("a delete over the quota: %v", err)
			}
		})
	}
}

// checkQuotaOverHTTP: at the quota, a write through the gateway is refused 429 with a
// RESOURCE_EXHAUSTED problem and no Retry-After, reads work, and deletes (over HTTP and RPC) make room.
func checkQuotaOverHTTP(t *testing.T, a *server.Server, c *kvclient.Client, keys []string) {
	t.Helper()
	ctx := context.Background()
	base := "http://" + a.GatewayAddr()
	var problem struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	big := strings.Repeat("v", 9000) // more than a filling batch: more than the room left
	for _, call := range [][3]string{
		{"PUT", "/v1/kv/big", big},
		{"POST", "/v1/kv:putAll", `{"mode":"best_effort","entries":[{"key":"x","value":"` + big + `"}]}`},
	} {
		code, hdr, body := testnet.Do(t, call[0], base+call[1], call[2])
		if err := json.Unmarshal(body, &problem); err != nil || code != 429 || problem.Code != "RESOURCE_EXHAUSTED" ||
			!strings.Contains(problem.Detail, "store.max_bytes") {
			t.Fatalf("%s %s at the quota: %d %s; want 429 RESOURCE_EXHAUSTED naming store.max_bytes", call[0], call[1], code, body)
		}
		if ra := hdr.Get("Retry-After"); ra != "" { // waiting does not free a full store
			t.Fatalf("%s %s at the quota: Retry-After %q; want none", call[0], call[1], ra)
		}
	}
	if code, _, body := testnet.Do(t, "GET", base+"/v1/kv/"+strings.ReplaceAll(keys[0], "/", "%2F"), ""); code != 200 || len(body) != 1024 {
		t.Fatalf("GET at the quota: %d, %d bytes", code, len(body))
	}
	got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys[:8]})
	if err != nil || !got.Items[7].Found {
		t.Fatalf("GetAll at the quota: %+v, %v", got, err)
	}
	if code, _, body := testnet.Do(t, "DELETE", base+"/v1/kv/"+strings.ReplaceAll(keys[0], "/", "%2F"), ""); code != 204 {
		t.Fatalf("DELETE at the quota: %d %s", code, body)
	}
	if _, err := c.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: keys[1]}, {Key: keys[2]}, {Key: keys[3]}}}); err != nil {
		t.Fatalf("DeleteAll at the quota: %v", err)
	}
	if code, _, body := testnet.Do(t, "PUT", base+"/v1/kv/big", strings.Repeat("v", 2048)); code != 201 {
		t.Fatalf("PUT once deletes made room: %d %s", code, body)
	}
}
