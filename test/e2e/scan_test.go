package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// scanFixture starts a server whose Scan pages hold at most 30 items and 2 KiB, writes n keys
// under "scan/" (values of 100 bytes) and one outside it, and returns the server's gateway URL,
// the client and the values written.
func scanFixture(t *testing.T, n int) (string, *kvclient.Client, map[string]string) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Limits.MaxScanEntries, cfg.Limits.MaxScanBytes = 30, 2048
	a, c := startTestServer(t, cfg)
	want := make(map[string]string, n)
	entries := []*kv.Entry{{Key: "other/x", Value: []byte("no")}}
	for i := range n {
		k, v := fmt.Sprintf("scan/%03d", i), fmt.Sprintf("%03d%s", i, strings.Repeat("v", 97))
		want[k] = v
		entries = append(entries, &kv.Entry{Key: k, Value: []byte(v)})
		if len(entries) == 100 || i == n-1 {
			if _, err := c.PutAll(context.Background(), &kv.PutAllRequest{Entries: entries}); err != nil {
				t.Fatal(err)
			}
			entries = nil
		}
	}
	return "http://" + a.GatewayAddr(), c, want
}

// TestE2EScanSDK scans through the SDK, page by page and with ScanAll: every key once with its
// value and version, pages within the configured bounds, keys only without values.
func TestE2EScanSDK(t *testing.T) {
	_, c, want := scanFixture(t, 250)
	ctx := context.Background()
	got := make(map[string]string)
	req := &kv.ScanRequest{Prefix: "scan/"}
	for pages := 0; ; pages++ {
		resp, err := c.Scan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, it := range resp.Items {
			size += len(it.Key) + len(it.Value)
			if _, dup := got[it.Key]; dup || !it.Found || it.Version <= 0 || it.Version > resp.Revision {
				t.Fatalf("item %+v (revision %d): repeated, not found or at a bad version", it, resp.Revision)
			}
			got[it.Key] = string(it.Value)
		}
		if len(resp.Items) > 30 || size > 2048 {
			t.Fatalf("page %d: %d items, %d bytes; over the bounds of 30 and 2048", pages, len(resp.Items), size)
		}
		if resp.NextCursor == "" {
			break
		}
		req.Cursor = resp.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scanned %d keys, want the %d written", len(got), len(want))
	}

	n := 0
	for it, err := range kvclient.ScanAll(ctx, c, &kv.ScanRequest{Prefix: "scan/1", KeysOnly: true, Limit: 7}) {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(it.Key, "scan/1") || len(it.Value) != 0 {
			t.Fatalf("keys-only item %+v", it)
		}
		n++
	}
	if n != 100 {
		t.Fatalf("ScanAll of scan/1: %d keys, want 100", n)
	}
}

// TestE2EScanRefusals sends the SDK hostile limits and cursors: each is INVALID_ARGUMENT, and
// the server goes on serving.
func TestE2EScanRefusals(t *testing.T) {
	_, c, _ := scanFixture(t, 40)
	ctx := context.Background()
	first, err := c.Scan(ctx, &kv.ScanRequest{Prefix: "scan/", Limit: 10})
	if err != nil || first.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	good := first.NextCursor
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1
	for name, req := range map[string]*kv.ScanRequest{
		"negative limit":         {Prefix: "scan/", Limit: -1},
		"limit over the maximum": {Prefix: "scan/", Limit: 31},
		"cursor not base64":      {Prefix: "scan/", Cursor: "!!!"},
		"cursor cut":             {Prefix: "scan/", Cursor: good[:len(good)-3]},
		"cursor changed":         {Prefix: "scan/", Cursor: string(flipped)},
		"cursor huge":            {Prefix: "scan/", Cursor: strings.Repeat("A", 4000)},
		"cursor of a prefix":     {Prefix: "scan/1", Cursor: good},
		"prefix too long":        {Prefix: strings.Repeat("p", 65)},
		"prefix not UTF-8":       {Prefix: "\xff"},
	} {
		_, err := c.Scan(ctx, req)
		if e := wantErr(t, err, kvclient.ErrInvalidArgument); e.Message == "" {
			t.Errorf("%s: no sentence", name)
		}
	}
	// 18 items: keys and values of 108 bytes each, against the bound of 2048 bytes.
	if resp, err := c.Scan(ctx, &kv.ScanRequest{Prefix: "scan/", Cursor: good, Limit: 30}); err != nil || len(resp.Items) != 18 {
		t.Fatalf("the good cursor after the refusals: %d items, %v", len(resp.GetItems()), err)
	}
}

// TestE2EScanHTTP follows GET /v1/kv pages over real HTTP, and checks the query's validation.
func TestE2EScanHTTP(t *testing.T) {
	base, _, want := scanFixture(t, 90)
	type page struct {
		Items []struct {
			Key     string  `json:"key"`
			Value   *string `json:"value"`
			Version int64   `json:"version"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
		Revision   int64  `json:"revision"`
	}
	got := make(map[string]string)
	q := url.Values{"prefix": {"scan/"}, "limit": {"25"}}
	for pages := 0; ; pages++ {
		code, _, body := testnet.Do(t, "GET", base+"/v1/kv?"+q.Encode(), "")
		var p page
		if err := json.Unmarshal(body, &p); code != 200 || err != nil || len(p.Items) > 25 {
			t.Fatalf("page %d: %d %s (%v)", pages, code, body, err)
		}
		for _, it := range p.Items {
			if _, dup := got[it.Key]; dup || it.Value == nil || it.Version <= 0 {
				t.Fatalf("page %d: item %+v repeated or without value", pages, it)
			}
			got[it.Key] = *it.Value
		}
		if p.NextCursor == "" {
			break
		}
		q.Set("cursor", p.NextCursor)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scanned %d keys over HTTP, want the %d written", len(got), len(want))
	}
	code, _, body := testnet.Do(t, "GET", base+"/v1/kv?prefix=other%2F&keys_only=true", "")
	if code != 200 || !strings.Contains(string(body), `"key":"other/x"`) || strings.Contains(string(body), `"value`) {
		t.Fatalf("keys_only: %d %s", code, body)
	}
	code, _, body = testnet.Do(t, "GET", base+"/v1/kv?prefix=scan%2F&snapshot=true&limit=5", "")
	var snap page
	if err := json.Unmarshal(body, &snap); code != 200 || err != nil || len(snap.Items) != 5 || snap.NextCursor == "" {
		t.Fatalf("snapshot=true: %d %s", code, body)
	}
	for _, query := range []string{"limit=x", "limit=-1", "limit=31", "limit=99999999999", "keys_only=yes", "snapshot=1", "prefix=a&prefix=b",
		"pfx=a", "cursor=%21%21", "cursor=" + strings.Repeat("A", 100)} {
		code, _, body := testnet.Do(t, "GET", base+"/v1/kv?"+query, "")
		var problem struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(body, &problem); code != 400 || err != nil || problem.Code != "INVALID_ARGUMENT" {
			t.Errorf("?%s: %d %s; want 400 INVALID_ARGUMENT", query, code, body)
		}
	}
}
