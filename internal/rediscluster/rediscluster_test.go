package rediscluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

func TestMain(m *testing.M) { Main(m) }

// The cluster the script starts is whole (every node says cluster_state:ok, three masters
// share the 16384 slots) and serves keys of every master through a cluster client.
func TestClusterServesEverySlotRange(t *testing.T) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: Addrs(t), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for node, conn := range c.Nodes() {
		info, err := conn.Do(ctx, conn.B().ClusterInfo().Build()).ToString()
		if err != nil {
			t.Fatalf("%s: CLUSTER INFO: %v", node, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			t.Fatalf("%s: not ok:\n%s", node, info)
		}
	}
	shards, err := c.Do(ctx, c.B().ClusterShards().Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3 masters with a replica each", len(shards))
	}

	// Keys spread over the slots land on all three masters; each reads back what was set.
	masters := map[string]bool{}
	for i := range 64 {
		k, v := fmt.Sprintf("smoke:%d", i), fmt.Sprintf("value %d", i)
		if err := c.Do(ctx, c.B().Set().Key(k).Value(v).Build()).Error(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		got, err := c.Do(ctx, c.B().Get().Key(k).Build()).ToString()
		if err != nil || got != v {
			t.Fatalf("GET %s = %q, %v; want %q", k, got, err, v)
		}
		slot, err := c.Do(ctx, c.B().ClusterKeyslot().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		masters[masterOf(t, ctx, c, slot)] = true
		if err := c.Do(ctx, c.B().Del().Key(k).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("64 keys landed on %d masters, want 3", len(masters))
	}
}

// masterOf names the master serving slot, as CLUSTER SLOTS reports it.
func masterOf(t *testing.T, ctx context.Context, c rueidis.Client, slot int64) string {
	t.Helper()
	ranges, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		a, err := r.ToArray()
		if err != nil || len(a) < 3 {
			t.Fatalf("CLUSTER SLOTS entry %v: %v", r, err)
		}
		lo, _ := a[0].AsInt64()
		hi, _ := a[1].AsInt64()
		if slot >= lo && slot <= hi {
			m, _ := a[2].ToArray()
			port, _ := m[1].AsInt64()
			return fmt.Sprint(port)
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return ""
}
