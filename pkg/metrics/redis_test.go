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
	m.Failed("apply", "noscript")
	m.Unconfirmed(16)
	m.Unconfirmed(3)
	m.Unrecorded(2)
	nodes = 5
	want := `
# HELP putallkv_redis_failures_total Script calls, WAITs and MGETs that failed, by op (apply, read) and reason (a refusal such as clusterdown or oom, noscript, nomodule, error, connection, wait).
# TYPE putallkv_redis_failures_total counter
putallkv_redis_failures_total{op="apply",reason="noscript"} 1
putallkv_redis_failures_total{op="apply",reason="wait"} 2
# HELP putallkv_redis_nodes Redis nodes the engine holds a connection to: the masters and the replicas reported healthy.
# TYPE putallkv_redis_nodes gauge
putallkv_redis_nodes 5
# HELP putallkv_redis_unconfirmed_writes_total Writes applied on their master that WAIT did not confirm within redis.ack_timeout: their calls failed with the outcome unknown, and a failover may lose them.
# TYPE putallkv_redis_unconfirmed_writes_total counter
putallkv_redis_unconfirmed_writes_total 19
# HELP putallkv_redis_unrecorded_writes_total Writes of idempotent calls applied without an idempotency record in Redis (the record was full): a retry applies them again.
# TYPE putallkv_redis_unrecorded_writes_total counter
putallkv_redis_unrecorded_writes_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "putallkv_redis_failures_total", "putallkv_redis_nodes",
		"putallkv_redis_unconfirmed_writes_total", "putallkv_redis_unrecorded_writes_total"); err != nil {
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
