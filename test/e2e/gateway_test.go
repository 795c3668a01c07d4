package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// TestE2EGatewayWirings writes through the gateway beside the RPC server and through a
// separate gateway tier in front of it, and reads each write back over RPC.
func TestE2EGatewayWirings(t *testing.T) {
	a, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	local := "http://" + a.GatewayAddr()
	if code, _, body := testnet.Do(t, "PUT", local+"/v1/kv/users%2F1", "ada"); code != 201 {
		t.Fatalf("PUT through the in-process gateway: %d %s", code, body)
	}

	tierCfg := testConfig(t)
	tierCfg.Gateway.Upstream = a.RPCAddr()
	tier := testserver.Start(t, tierCfg, quiet)
	if tier.RPCAddr() != "" || tier.Engine() != nil {
		t.Fatal("a gateway tier opened a store or an RPC server")
	}
	remote := "http://" + tier.GatewayAddr()
	code, hdr, body := testnet.Do(t, "PUT", remote+"/v1/kv/users%2F2", "grace")
	if code != 201 || hdr.Get("ETag") != `"2"` {
		t.Fatalf("PUT through the tier: %d %s %v", code, body, hdr)
	}
	for _, key := range []string{"users/1", "users/2"} {
		got, err := c.Get(ctx, &kv.GetRequest{Key: key})
		if err != nil {
			t.Fatalf("RPC Get %s: %v", key, err)
		}
		if code, _, body := testnet.Do(t, "GET", remote+"/v1/kv/"+strings.ReplaceAll(key, "/", "%2F"), ""); code != 200 || string(body) != string(got.Item.Value) {
			t.Fatalf("GET %s through the tier: %d %q; RPC has %q", key, code, body, got.Item.Value)
		}
	}
	for _, base := range []string{local, remote} {
		if code, _, body := testnet.Do(t, "GET", base+"/readyz", ""); code != 200 {
			t.Fatalf("%s/readyz: %d %s", base, code, body)
		}
	}
}

// TestE2EGatewayAdmission checks admission over HTTP: an atomic batch refused with 429 and
// Retry-After, a best_effort batch answered 200 with per-key RESOURCE_EXHAUSTED results.
func TestE2EGatewayAdmission(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait, cfg.Limiter.MaxChunk = 1, 10, 0, 10
	a, _ := startTestServer(t, cfg)
	base := "http://" + a.GatewayAddr()
	batch := func(mode string, n int, prefix string) string {
		es := make([]string, n)
		for i := range es {
			es[i] = fmt.Sprintf(`{"key":"%s%d","value":"v"}`, prefix, i)
		}
		return fmt.Sprintf(`{"mode":%q,"entries":[%s]}`, mode, strings.Join(es, ","))
	}
	if code, _, body := testnet.Do(t, "POST", base+"/v1/kv:putAll", batch("atomic", 10, "a")); code != 200 {
		t.Fatalf("burst-sized atomic batch: %d %s", code, body)
	}
	code, hdr, body := testnet.Do(t, "POST", base+"/v1/kv:putAll", batch("atomic", 5, "b"))
	var problem struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(body, &problem); err != nil || code != 429 || problem.Code != "RESOURCE_EXHAUSTED" || hdr.Get("Retry-After") == "" {
		t.Fatalf("atomic over the tokens: %d %v %s", code, hdr, body)
	}
	code, hdr, body = testnet.Do(t, "POST", base+"/v1/kv:putAll", batch("best_effort", 5, "c"))
	var res struct {
		Applied      int   `json:"applied"`
		RetryAfterMs int64 `json:"retry_after_ms"`
		Results      []struct {
			Code string `json:"code"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &res); err != nil || code != 200 || res.RetryAfterMs <= 0 || hdr.Get("Retry-After") == "" || len(res.Results) != 5 {
		t.Fatalf("best_effort over the tokens: %d %v %s", code, hdr, body)
	}
	for i, r := range res.Results[res.Applied:] {
		if r.Code != "RESOURCE_EXHAUSTED" {
			t.Fatalf("result %d: %s; want RESOURCE_EXHAUSTED for entries not admitted", res.Applied+i, r.Code)
		}
	}
}
