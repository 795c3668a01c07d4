package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RedisCluster turns the redis_cluster engine's events into Prometheus metrics: it is a
// redisstore.Observer by its methods alone, so this package does not import the engine, and
// the engine knows nothing of Prometheus. Its labels take only the values the engine passes:
// op (apply, read) and a failure's reason, from a fixed set.
type RedisCluster struct {
	roundTrip   *prometheus.HistogramVec
	slots       *prometheus.HistogramVec
	failures    *prometheus.CounterVec
	unconfirmed prometheus.Counter
	unrecorded  prometheus.Counter
}

// NewRedisCluster registers the redis_cluster engine's metrics (putallkv_redis_*) on reg;
// nodes, read at each scrape, is how many Redis nodes the engine holds a connection to.
func NewRedisCluster(reg prometheus.Registerer, nodes func() int) (*RedisCluster, error) {
	m := &RedisCluster{
		roundTrip: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "redis_round_trip_seconds",
			Help:      "Duration of the engine's round trips to Redis (a write's script calls and their WAITs, a read's MGETs), by op (apply, read).",
			Buckets:   prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. ~1.6s
		}, []string{"op"}),
		slots: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "redis_round_trip_slots",
			Help:      "Hash slots (one script call or MGET each) per round trip to Redis, by op (apply, read).",
			Buckets:   prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}, []string{"op"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "redis_failures_total",
			Help:      "Script calls, WAITs and MGETs that failed, by op (apply, read) and reason (a refusal such as clusterdown or oom, noscript, nomodule, error, connection, wait).",
		}, []string{"op", "reason"}),
		unconfirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "redis_unconfirmed_writes_total",
			Help:      "Writes applied on their master that WAIT did not confirm within redis.ack_timeout: their calls failed with the outcome unknown, and a failover may lose them.",
		}),
		unrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "redis_unrecorded_writes_total",
			Help:      "Writes of idempotent calls applied without an idempotency record in Redis (the record was full): a retry applies them again.",
		}),
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "redis_nodes",
		Help:      "Redis nodes the engine holds a connection to: the masters and the replicas reported healthy.",
	}, func() float64 { return float64(nodes()) })
	for _, c := range []prometheus.Collector{m.roundTrip, m.slots, m.failures, m.unconfirmed, m.unrecorded, gauge} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// RoundTrip implements redisstore.Observer.
func (m *RedisCluster) RoundTrip(op string, slots int, d time.Duration) {
	m.roundTrip.WithLabelValues(op).Observe(d.Seconds())
	m.slots.WithLabelValues(op).Observe(float64(slots))
}

// Failed implements redisstore.Observer.
func (m *RedisCluster) Failed(op, reason string) { m.failures.WithLabelValues(op, reason).Inc() }

// Unconfirmed implements redisstore.Observer.
func (m *RedisCluster) Unconfirmed(writes int) { m.unconfirmed.Add(float64(writes)) }

// Unrecorded implements redisstore.Observer.
func (m *RedisCluster) Unrecorded(writes int) { m.unrecorded.Add(float64(writes)) }
