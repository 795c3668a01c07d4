package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// loadChunk is chunk c of a load: n entries with keys prefix/c/i.
func loadChunk(prefix string, c int64, n int) []*kv.Entry {
	entries := make([]*kv.Entry, n)
	for i := range entries {
		entries[i] = &kv.Entry{Key: fmt.Sprintf("%s/%d/%d", prefix, c, i), Value: []byte(fmt.Sprintf("v%d.%d", c, i))}
	}
	return entries
}

// acks gathers a Loader's acknowledgements.
type acks struct {
	mu  sync.Mutex
	all []kvclient.LoadAck
}

func (a *acks) add(ack kvclient.LoadAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, ack)
}

func (a *acks) list() []kvclient.LoadAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]kvclient.LoadAck(nil), a.all...)
}

// wantLoaded fails unless every key of chunks [0, n) of prefix reads back with its value.
func wantLoaded(t *testing.T, c *kvclient.Client, prefix string, chunks []int64, per int) {
	t.Helper()
	for _, ch := range chunks {
		entries := loadChunk(prefix, ch, per)
		keys := make([]string, len(entries))
		for i, e := range entries {
			keys[i] = e.Key
		}
		resp, err := c.GetAll(context.Background(), &kv.GetAllRequest{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range resp.Items {
			if !it.Found || string(it.Value) != string(entries[i].Value) {
				t.Fatalf("chunk %d key %s: found %v value %q; want %q", ch, keys[i], it.Found, it.Value, entries[i].Value)
			}
		}
	}
}

func TestE2ELoadWritesEveryChunkAndAcksInOrder(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	var got acks
	l, err := c.NewLoader(ctx, kvclient.WithLoadWindow(4), kvclient.WithLoadAcks(got.add))
	if err != nil {
		t.Fatal(err)
	}
	const chunks, per = 50, 100
	sent := make([]int64, chunks)
	for i := range chunks {
		sent[i] = int64(1000 + i)
		if err := l.Send(ctx, sent[i], loadChunk("load", sent[i], per)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	all := got.list()
	if len(all) != chunks {
		t.Fatalf("%d acks; want %d", len(all), chunks)
	}
	var last int64
	for i, a := range all {
		if a.Chunk != sent[i] || a.Err != nil || a.Applied != per || len(a.Results) != 0 || a.Revision <= last {
			t.Fatalf("ack %d = %+v; want chunk %d, %d applied at a revision after %d", i, a, sent[i], per, last)
		}
		last = a.Revision
	}
	wantLoaded(t, c, "load", sent, per)
}

func TestE2ELoadReportsFailuresPerKeyAndPerChunk(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	if _, err := c.Put(ctx, &kv.PutRequest{Key: "p/0/1", Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	var got acks
	l, err := c.NewLoader(ctx, kvclient.WithLoadAcks(got.add))
	if err != nil {
		t.Fatal(err)
	}
	created := loadChunk("p", 0, 3)
	for _, e := range created {
		e.ExpectedVersion = new(int64(0)) // create-only: p/0/1 exists
	}
	invalid := loadChunk("p", 2, 3)
	invalid[1].Key = ""
	for i, entries := range [][]*kv.Entry{created, loadChunk("p", 1, 101), invalid, loadChunk("p", 3, 2)} {
		if err := l.Send(ctx, int64(i), entries); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	all := got.list()
	if len(all) != 4 {
		t.Fatalf("%d acks; want 4", len(all))
	}
	if a := all[0]; a.Err != nil || a.Applied != 2 || len(a.Results) != 3 || a.Results[1].Code != kv.ErrorCode_ALREADY_EXISTS ||
		a.Results[0].Code != kv.ErrorCode_OK || a.Results[0].Version != a.Revision {
		t.Errorf("create-only chunk: %+v, results %v", a, a.Results)
	}
	if a := all[1]; !errors.Is(a.Err, kvclient.ErrTooLarge) || a.Applied != 0 {
		t.Errorf("chunk over limits.max_batch_entries: %+v; want TOO_LARGE", a)
	}
	if a := all[2]; !errors.Is(a.Err, kvclient.ErrInvalidArgument) || len(a.Err.Failed) != 1 || a.Err.Failed[0].Key != "" {
		t.Errorf("chunk with an empty key: %+v; want INVALID_ARGUMENT naming it", a)
	}
	if a := all[3]; a.Err != nil || a.Applied != 2 {
		t.Errorf("the chunk after the refused ones: %+v; want it written", a)
	}
	wantLoaded(t, c, "p", []int64{3}, 2)
}
