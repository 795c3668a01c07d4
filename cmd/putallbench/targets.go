package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"
	"github.com/cloudwego/kitex/transport"
	"github.com/redis/go-redis/v9"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/redisstore"
	"github.com/putallkv/putallkv/pkg/tlsconf"
)

// target is a system under load: one operation writes or reads a set of distinct keys.
type target interface {
	write(ctx context.Context, keys []string, value []byte) error
	read(ctx context.Context, keys []string) error
	// code names an operation's error for the report.
	code(err error) string
	close() error
}

func newTarget(cfg *config) (target, error) {
	switch cfg.target {
	case "rpc":
		opts, err := secureOptions(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kvclient.WithRPCTimeout(cfg.timeout), kvclient.WithPool(1024, 1024, time.Minute))
		if cfg.coalesce >= 0 {
			opts = append(opts, kvclient.WithCoalescing(cfg.coalesce))
		}
		c, err := kvclient.New(cfg.addrs(), opts...)
		if err != nil {
			return nil, err
		}
		return &rpcTarget{c: c, mode: writeMode(cfg.mode)}, nil
	case "kitex":
		return newKitexTarget(cfg)
	case "batcher":
		return newBatcherTarget(cfg)
	case "http":
		return newHTTPTarget(cfg), nil
	case "redis":
		return newRedisTarget(cfg), nil
	case "rueidis":
		return newRueidisTarget(cfg)
	}
	return nil, fmt.Errorf("--target must be rpc, kitex, http, batcher, redis or rueidis, got %q", cfg.target)
}

// secureOptions are the SDK options of --token and --ca.
func secureOptions(cfg *config) ([]kvclient.Option, error) {
	var opts []kvclient.Option
	if cfg.token != "" {
		opts = append(opts, kvclient.WithToken(cfg.token))
	}
	if cfg.caFile != "" {
		tlsCfg, err := tlsconf.Client(tlsconf.Files{CA: cfg.caFile})
		if err != nil {
			return nil, err
		}
		opts = append(opts, kvclient.WithTLS(tlsCfg))
	}
	return opts, nil
}

func writeMode(m string) kv.WriteMode {
	if m == "best_effort" {
		return kv.WriteMode_BEST_EFFORT
	}
	return kv.WriteMode_ATOMIC
}

// rpcTarget is putallkv over Kitex through the SDK: PutAll (Put for one key) and GetAll.
type rpcTarget struct {
	c    *kvclient.Client
	mode kv.WriteMode
}

// write sends one key as Put and several as PutAll.
func (t *rpcTarget) write(ctx context.Context, keys []string, value []byte) error {
	if len(keys) == 1 {
		_, err := t.c.Put(ctx, &kv.PutRequest{Key: keys[0], Value: value})
		return err
	}
	resp, err := t.c.PutAll(ctx, putAllOf(t.mode, keys, value))
	return allApplied(resp, err, len(keys))
}

func (t *rpcTarget) read(ctx context.Context, keys []string) error {
	_, err := t.c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	return err
}

func (t *rpcTarget) code(err error) string { return putallkvCode(err) }
func (t *rpcTarget) close() error          { return t.c.Close() }

// putAllOf is the PutAll request the write targets send: keys, each with value, in mode.
func putAllOf(mode kv.WriteMode, keys []string, value []byte) *kv.PutAllRequest {
	req := &kv.PutAllRequest{Mode: mode, Entries: make([]*kv.Entry, len(keys))}
	for i, k := range keys {
		req.Entries[i] = &kv.Entry{Key: k, Value: value}
	}
	return req
}

// allApplied is a PutAll's outcome as a write target reports it: its error, or one saying
// how many of its n keys were not applied.
func allApplied(resp *kv.PutAllResponse, err error, n int) error {
	if err == nil && int(resp.Applied) != n {
		return fmt.Errorf("%d of %d keys applied", resp.Applied, n)
	}
	return err
}

func putallkvCode(err error) string {
	var e *kvclient.Error
	if errors.As(err, &e) {
		return e.Code.String()
	}
	return "PARTIAL"
}

// kitexTarget is putallkv through the generated Kitex client alone, as a program that does
// without the SDK would call it: Framed, pooled long connections, Kitex's own RPC timeout; no
// trace id, retries or deadline propagation. It is what the framework costs a caller, beside
// which the SDK's own cost shows.
type kitexTarget struct {
	c    kvservice.Client
	mode kv.WriteMode
}

func newKitexTarget(cfg *config) (*kitexTarget, error) {
	c, err := kvservice.NewClient("putallkv", client.WithHostPorts(cfg.addrs()...),
		client.WithTransportProtocol(transport.Framed), client.WithRPCTimeout(cfg.timeout),
		client.WithLongConnection(connpool.IdleConfig{MaxIdlePerAddress: 1024, MaxIdleGlobal: 1024, MaxIdleTimeout: time.Minute}))
	if err != nil {
		return nil, err
	}
	return &kitexTarget{c: c, mode: writeMode(cfg.mode)}, nil
}

func (t *kitexTarget) write(ctx context.Context, keys []string, value []byte) error {
	if len(keys) == 1 {
		_, err := t.c.Put(ctx, &kv.PutRequest{Key: keys[0], Value: value})
		return err
	}
	resp, err := t.c.PutAll(ctx, putAllOf(t.mode, keys, value))
	return allApplied(resp, err, len(keys))
}

func (t *kitexTarget) read(ctx context.Context, keys []string) error {
	_, err := t.c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	return err
}

func (t *kitexTarget) code(err error) string {
	var e *kv.KVError
	if errors.As(err, &e) {
		return e.Code.String()
	}
	return "TRANSPORT"
}

// close has nothing to release: the generated client has no Close, and the process ends.
func (t *kitexTarget) close() error { return nil }

// httpTarget is putallkv through the HTTP gateway: POST /v1/kv:putAll and /v1/kv:getAll.
type httpTarget struct {
	base string
	mode string
	c    *http.Client
}

func newHTTPTarget(cfg *config) *httpTarget {
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}
	return &httpTarget{base: "http://" + cfg.addr, mode: cfg.mode, c: &http.Client{Transport: tr}}
}

type httpEntry struct {
	Key         string `json:"key"`
	ValueBase64 string `json:"value_base64"`
}

func (t *httpTarget) write(ctx context.Context, keys []string, value []byte) error {
	v := base64.StdEncoding.EncodeToString(value)
	entries := make([]httpEntry, len(keys))
	for i, k := range keys {
		entries[i] = httpEntry{Key: k, ValueBase64: v}
	}
	return t.post(ctx, "/v1/kv:putAll", map[string]any{"mode": t.mode, "entries": entries})
}

func (t *httpTarget) read(ctx context.Context, keys []string) error {
	return t.post(ctx, "/v1/kv:getAll", map[string]any{"keys": keys})
}

// httpStatusError is a non-2xx answer.
type httpStatusError struct{ status int }

func (e httpStatusError) Error() string { return fmt.Sprintf("HTTP %d", e.status) }

func (t *httpTarget) post(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return httpStatusError{resp.StatusCode}
	}
	return nil
}

func (t *httpTarget) code(err error) string {
	var se httpStatusError
	if errors.As(err, &se) {
		return fmt.Sprint("HTTP_", se.status)
	}
	return "TRANSPORT"
}

func (t *httpTarget) close() error {
	t.c.CloseIdleConnections()
	return nil
}

// redisTarget is Redis through go-redis: MSET / MGET for batches (SET / GET for one key), to
// one server or, when it answers CLUSTER INFO, to a Redis Cluster (ClusterClient), where a batch
// whose keys span slots goes as one MSET per slot in a pipeline (Redis refuses MSET across
// slots). With --pipeline above 1 an operation is that many commands of --batch keys each,
// sent in one round trip.
type redisTarget struct {
	c        redis.UniversalClient
	cluster  bool
	batch    int
	pipeline int
}

func newRedisTarget(cfg *config) *redisTarget {
	poolSize := max(10, 2*maxStep(cfg.steps))
	single := redis.NewClient(&redis.Options{Addr: cfg.addrs()[0], PoolSize: poolSize,
		ReadTimeout: cfg.timeout, WriteTimeout: cfg.timeout})
	t := &redisTarget{c: single, batch: cfg.batch, pipeline: cfg.pipeline}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	if single.ClusterInfo(ctx).Err() == nil {
		_ = single.Close()
		t.c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.addrs(), PoolSize: poolSize,
			ReadTimeout: cfg.timeout, WriteTimeout: cfg.timeout})
		t.cluster = true
	}
	return t
}

func maxStep(steps []int) int {
	m := 0
	for _, s := range steps {
		m = max(m, s)
	}
	return m
}

func (t *redisTarget) write(ctx context.Context, keys []string, value []byte) error {
	if t.pipeline == 1 && (!t.cluster || oneSlot(keys)) {
		return t.writeCmd(ctx, t.c, keys, value).Err()
	}
	_, err := t.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < len(keys); i += t.batch {
			cmd := keys[i : i+t.batch]
			if !t.cluster {
				t.writeCmd(ctx, p, cmd, value)
				continue
			}
			for _, group := range bySlot(cmd) {
				t.writeCmd(ctx, p, group, value)
			}
		}
		return nil
	})
	return err
}

func (t *redisTarget) writeCmd(ctx context.Context, c redis.Cmdable, keys []string, value []byte) redis.Cmder {
	if len(keys) == 1 {
		return c.Set(ctx, keys[0], value, 0)
	}
	pairs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, k, value)
	}
	return c.MSet(ctx, pairs...)
}

// oneSlot reports whether keys all map to one Redis Cluster hash slot.
func oneSlot(keys []string) bool {
	for _, k := range keys[1:] {
		if redisstore.Slot(k) != redisstore.Slot(keys[0]) {
			return false
		}
	}
	return true
}

// bySlot splits keys by hash slot, in order of first appearance.
func bySlot(keys []string) [][]string {
	var groups [][]string
	index := map[int]int{}
	for _, k := range keys {
		s := redisstore.Slot(k)
		i, ok := index[s]
		if !ok {
			i = len(groups)
			index[s] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], k)
	}
	return groups
}

func (t *redisTarget) read(ctx context.Context, keys []string) error {
	if len(keys) == 1 {
		err := t.c.Get(ctx, keys[0]).Err()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	}
	if !t.cluster || oneSlot(keys) {
		return t.c.MGet(ctx, keys...).Err()
	}
	_, err := t.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, group := range bySlot(keys) {
			p.MGet(ctx, group...)
		}
		return nil
	})
	return err
}

func (t *redisTarget) code(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		return "TIMEOUT"
	}
	return "REDIS_ERROR"
}

func (t *redisTarget) close() error { return t.c.Close() }
