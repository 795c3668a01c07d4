package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRedisCluster feeds the adapter an engine's events and reads them back from the registry,
// by the names docs/metrics.md gives.
func TestRedisCluster(t *testing.T) {
	reg := NewRegistry()
	nodes := 6
	m, err := NewRedisCluster(reg, func() int { return nodes })
	if err != nil {
		t.Fatal(err)
	}
	m.RoundTrip("apply", 3, time.Millisecond)
	m.RoundTrip("read", 1, 100*time.Microsecond)
	m.Failed("apply", "wait")
	m.Failed("apply", "wait")
	m.Failed("read", "noscript")
	nodes = 5
	want := `
# HELP putallkv_redis_failures_total Script calls and WAITs that failed, by op (apply, read) and reason (a refusal such as clusterdown or oom, noscript, error, connection, wait).
# TYPE putallkv_redis_failures_total counter
putallkv_redis_failures_total{op="apply",reason="wait"} 2
putallkv_redis_failures_total{op="read",reason="noscript"} 1
# HELP putallkv_redis_nodes Redis nodes the engine holds a connection to: the masters and the replicas reported healthy.
# TYPE putallkv_redis_nodes gauge
putallkv_redis_nodes 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "putallkv_redis_failures_total", "putallkv_redis_nodes"); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"putallkv_redis_round_trip_seconds", "putallkv_redis_round_trip_slots"} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != 2 {
			t.Errorf("%s: %d series, %v; want 2 (apply, read)", name, got, err)
		}
	}
	if _, err := NewRedisCluster(reg, func() int { return 0 }); err == nil {
		t.Error("a second NewRedisCluster on the same registry succeeded; want the duplicate refused")
	}
}
