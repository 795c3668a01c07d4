package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// TestLoadOnTheClusterEngine loads chunks of keys spread over many hash slots through one node
// and reads them back through another: a chunk is a BEST_EFFORT PutAll, which the
// redis_cluster engine writes slot by slot, each key at its slot's revision.
func TestLoadOnTheClusterEngine(t *testing.T) {
	a, b := node(t, false), node(t, true)
	ctx := context.Background()
	prefix := fmt.Sprintf("load-%d/", time.Now().UnixNano())
	l, err := a.NewLoader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for ch := range int64(5) {
		entries := make([]*kv.Entry, 200)
		for i := range entries {
			entries[i] = &kv.Entry{Key: fmt.Sprintf("%s%d/%d", prefix, ch, i), Value: []byte{byte(i)}}
			keys = append(keys, entries[i].Key)
		}
		if err := l.Send(ctx, ch, entries); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := b.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range resp.Items {
		if !it.Found || it.Value[0] != byte(i%200) {
			t.Fatalf("%s: found %v, value %v", keys[i], it.Found, it.Value)
		}
	}
}
