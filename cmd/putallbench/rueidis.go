package main

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/rueidis"
)

// rueidisTarget is Redis (one server or a Redis Cluster) through rueidis, which pipelines
// concurrent commands on shared connections by itself: MSET / MGET for batches, SET / GET for
// one key. On a cluster a batch goes through rueidis.MSet, which sends one SET per key, side by
// side (the masters' INFO commandstats count 16 SETs per batch of 16, also of one slot), since
// Redis refuses MSET across slots.
type rueidisTarget struct {
	c       rueidis.Client
	cluster bool
}

func newRueidisTarget(cfg *config) (*rueidisTarget, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cfg.addrs(), DisableCache: true,
		ConnWriteTimeout: cfg.timeout})
	if err != nil {
		return nil, err
	}
	// CLUSTER INFO fails on a server without cluster mode.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	cluster := c.Do(ctx, c.B().ClusterInfo().Build()).Error() == nil
	return &rueidisTarget{c: c, cluster: cluster}, nil
}

func (t *rueidisTarget) write(ctx context.Context, keys []string, value []byte) error {
	v := rueidis.BinaryString(value)
	switch {
	case len(keys) == 1:
		return t.c.Do(ctx, t.c.B().Set().Key(keys[0]).Value(v).Build()).Error()
	case t.cluster:
		kvs := make(map[string]string, len(keys))
		for _, k := range keys {
			kvs[k] = v
		}
		for _, err := range rueidis.MSet(t.c, ctx, kvs) {
			if err != nil {
				return err
			}
		}
		return nil
	}
	cmd := t.c.B().Mset().KeyValue()
	for _, k := range keys {
		cmd = cmd.KeyValue(k, v)
	}
	return t.c.Do(ctx, cmd.Build()).Error()
}

func (t *rueidisTarget) read(ctx context.Context, keys []string) error {
	if len(keys) == 1 {
		err := t.c.Do(ctx, t.c.B().Get().Key(keys[0]).Build()).Error()
		if rueidis.IsRedisNil(err) {
			return nil
		}
		return err
	}
	if t.cluster {
		_, err := rueidis.MGet(t.c, ctx, keys)
		return err
	}
	return t.c.Do(ctx, t.c.B().Mget().Key(keys...).Build()).Error()
}

func (t *rueidisTarget) code(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		return "TIMEOUT"
	}
	return "REDIS_ERROR"
}

func (t *rueidisTarget) close() error { t.c.Close(); return nil }
