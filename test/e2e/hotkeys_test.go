package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/hotkey"
)

// TestE2EHotKeys writes one key in every batch through the SDK and finds it, and only it, at
// GET /admin/hotkeys and in the hot-key series; key names never appear on /metrics.
func TestE2EHotKeys(t *testing.T) {
	cfg := testConfig(t)
	cfg.HotKeys = config.HotKeysConfig{SampleEvery: 1, Threshold: 50, Window: cfg.HotKeys.Window,
		KeepAlive: cfg.HotKeys.KeepAlive, MaxKeys: 8}
	s, c := startTestServer(t, cfg)
	ctx := context.Background()

	// 100 batches: "flash-sale#42" in each, 15 keys of 1 500 others in each.
	for i := range 100 {
		entries := []*kv.Entry{{Key: "flash-sale#42", Value: []byte("x")}}
		for j := range 15 {
			entries = append(entries, &kv.Entry{Key: fmt.Sprintf("user#%d", i*15+j), Value: []byte("y")})
		}
		if _, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: entries, Mode: kv.WriteMode_ATOMIC}); err != nil {
			t.Fatal(err)
		}
	}
	// and one single-key Put, which counts too.
	if _, err := c.Put(ctx, &kv.PutRequest{Key: "flash-sale#42", Value: []byte("z")}); err != nil {
		t.Fatal(err)
	}

	var report hotkey.Report
	if err := json.Unmarshal([]byte(testnet.Get(t, "http://"+s.AdminAddr()+"/admin/hotkeys")), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Keys) != 1 || report.Keys[0].Key != "flash-sale#42" {
		t.Fatalf("hot keys %+v; want flash-sale#42 alone", report.Keys)
	}
	// 101 of the 1 601 writes: a share of 0.063.
	if share := report.Keys[0].Share; share < 0.06 || share > 0.07 {
		t.Errorf("share %.3f; want 101/1601 = 0.063", share)
	}
	if report.SampleEvery != 1 || report.Threshold != 50 {
		t.Errorf("report settings %+v; want sample_every 1, threshold 50", report)
	}

	page := scrape(t, s)
	if n := metric(t, page, "putallkv_hot_keys"); n != 1 {
		t.Errorf("putallkv_hot_keys %v; want 1", n)
	}
	if share := metric(t, page, "putallkv_hot_keys_write_share"); share < 0.06 || share > 0.07 {
		t.Errorf("putallkv_hot_keys_write_share %v; want 0.063", share)
	}
	for _, name := range []string{"flash-sale", "user#"} {
		if strings.Contains(page, name) {
			t.Errorf("/metrics names keys (%q)", name)
		}
	}
}
