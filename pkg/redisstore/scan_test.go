package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/datadriven"
	"github.com/putallkv/putallkv/pkg/store"
)

// describeScan answers the semantics scripts' "scan [PREFIX] [limit=N] [bytes=N] [keys_only]"
// as pkg/store's runner does, the prefix in the scripts' slot: every page followed, the items
// sorted by key.
func describeScan(c *datadriven.Case, e *Engine) string {
	req := store.ScanRequest{Prefix: semanticsTag, Limit: 1000, MaxBytes: 1 << 20}
	for _, a := range c.Args {
		k, v, isOption := strings.Cut(a, "=")
		switch {
		case a == "keys_only":
			req.KeysOnly = true
		case !isOption:
			req.Prefix = semanticsTag + a
		case k == "limit":
			req.Limit = int(c.Int(v))
		case k == "bytes":
			req.MaxBytes = int(c.Int(v))
		default:
			c.Fatalf("scan: unknown option %q", k)
		}
	}
	var lines []string
	err := store.ScanAll(context.Background(), e, req, func(page store.ScanPage) error {
		if len(page.Items) > req.Limit {
			c.Fatalf("a page of %d items, over limit=%d", len(page.Items), req.Limit)
		}
		for _, it := range page.Items {
			item := store.Item{Value: it.Value, Version: it.Version, ExpiresAtMs: it.ExpiresAtMs, Found: true}
			lines = append(lines, fmt.Sprintf("%s: %s", strings.TrimPrefix(it.Key, semanticsTag), item))
		}
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	slices.Sort(lines)
	return strings.Join(append([]string{fmt.Sprintf("keys=%d", len(lines))}, lines...), "\n")
}

// TestScanAcrossSlots scans keys spread over many slots while writes go on between pages (drawn
// from a seeded generator): every key present throughout, overwritten or not, comes exactly once,
// no key comes twice, and pages keep their bounds.
func TestScanAcrossSlots(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 0})
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	prefix := fmt.Sprintf("scan%d/", seed)
	put := func(keys ...string) {
		t.Helper()
		writes := make([]store.Write, len(keys))
		for i, k := range keys {
			writes[i] = store.Write{Key: k, Value: []byte(fmt.Sprint(rng.Int())), ExpectedVersion: store.AnyVersion}
		}
		if _, err := e.Apply(ctx, store.Batch{Mode: store.BestEffort, Writes: writes}, make([]store.Result, len(writes))); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	const stable, churn = 600, 200
	initial := make([]string, stable)
	for i := range initial {
		initial[i] = fmt.Sprintf("%sstable/%d", prefix, i)
	}
	put(initial...)
	put(prefix[:len(prefix)-1] + "x/not-mine") // shares the prefix's text but for the slash
	seen := make(map[string]int)
	req := store.ScanRequest{Prefix: prefix, Limit: 5 + rng.IntN(40), MaxBytes: 600}
	err := store.ScanAll(ctx, e, req, func(page store.ScanPage) error {
		size := 0
		for _, it := range page.Items {
			seen[it.Key]++
			size += len(it.Key) + len(it.Value)
		}
		if len(page.Items) > req.Limit || len(page.Items) > 1 && size > req.MaxBytes {
			return fmt.Errorf("a page of %d items and %d bytes, over limit=%d bytes=%d", len(page.Items), size, req.Limit, req.MaxBytes)
		}
		for range 5 {
			put(fmt.Sprintf("%schurn/%d", prefix, rng.IntN(churn)), fmt.Sprintf("%sstable/%d", prefix, rng.IntN(stable)))
			del := []store.Write{{Key: fmt.Sprintf("%schurn/%d", prefix, rng.IntN(churn)), Delete: true, ExpectedVersion: store.AnyVersion}}
			if _, err := e.Apply(ctx, store.Batch{Mode: store.BestEffort, Writes: del}, make([]store.Result, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	for k, n := range seen {
		if n != 1 || !strings.HasPrefix(k, prefix) {
			t.Errorf("seed %d: key %q returned %d times", seed, k, n)
		}
	}
	for _, k := range initial {
		if seen[k] != 1 {
			t.Errorf("seed %d: key %q, present throughout, returned %d times", seed, k, seen[k])
		}
	}
}

// TestScanPinnedSlot scans a prefix holding a hash tag: one slot, read as of its revision.
func TestScanPinnedSlot(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 0})
	ctx := context.Background()
	writes := []store.Write{{Key: "{pin}a", Value: []byte("1"), ExpectedVersion: store.AnyVersion},
		{Key: "{pin}b", Value: []byte("2"), ExpectedVersion: store.AnyVersion, ExpiresAtMs: time.Now().Add(time.Hour).UnixMilli()}}
	out, err := e.Apply(ctx, store.Batch{Mode: store.Atomic, Writes: writes}, make([]store.Result, 2))
	if err != nil {
		t.Fatal(err)
	}
	page, err := e.Scan(ctx, store.ScanRequest{Prefix: "{pin}", Limit: 10, MaxBytes: 100})
	if err != nil || len(page.Items) != 2 || page.Next != nil || page.Revision != out.Revision {
		t.Fatalf("page %+v, err %v; want both keys, no next cursor, revision %d", page, err, out.Revision)
	}
	if a, b := page.Items[0], page.Items[1]; a.Key != "{pin}a" || string(a.Value) != "1" || b.Key != "{pin}b" || b.ExpiresAtMs != writes[1].ExpiresAtMs {
		t.Errorf("items %+v", page.Items)
	}
}

// TestScanBadCursor feeds Scan cursors the engine did not make.
func TestScanBadCursor(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 0})
	for _, c := range [][]byte{{}, {1, 0}, {2, 0, 0, 0}, {1, 0xff, 0xff, 1, 'k'}, {1, 0, 1, 0, 'k'}, {1, 0, 1, 9}} {
		if _, err := e.Scan(context.Background(), store.ScanRequest{Cursor: c, Limit: 1, MaxBytes: 1}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %x: err %v; want ErrBadCursor", c, err)
		}
	}
}
