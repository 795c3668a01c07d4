// Package cluster holds the end-to-end tests of putallkv on the redis_cluster engine: real
// servers (internal/server, in this process) over one real Redis Cluster started by
// script/redis-cluster.sh for this test binary, driven through the real SDK.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/tlsconf/tlstest"
)

func TestMain(m *testing.M) { rediscluster.Main(m) }

// node starts a putallkv server with store.engine redis_cluster on the test cluster, and an
// SDK client of it; both stop when the test ends. With module, the server applies writes
// through the Redis module's PUTALL.APPLY (the test cluster's nodes load it) rather than the
// Lua script: the tests pair one node of each kind, which must share one data set and one set
// of idempotency records.
func node(t *testing.T, module bool) *kvclient.Client {
	t.Helper()
	s := testserver.Start(t, testserver.Config(t, func(cfg *config.Config) {
		cfg.Store.Engine = "redis_cluster"
		cfg.Redis.Addrs = strings.Join(rediscluster.Addrs(t), ",")
		cfg.Redis.Module = module
		cfg.Gateway.Addr = ""
	}), nil)
	return testserver.Client(t, s.RPCAddr(), kvclient.WithRPCTimeout(10*time.Second))
}

// Two stateless nodes serve one data set: what one writes the other reads, at the same
// versions; an ATOMIC write within one hash tag applies at one revision, one across slots is
// refused with CROSS_SLOT naming the keys, and nothing of it is written.
func TestTwoNodesShareOneCluster(t *testing.T) {
	a, b := node(t, false), node(t, true)
	ctx := context.Background()
	tag := fmt.Sprintf("{e2e-%d}", time.Now().UnixNano())
	moduleCalls := rediscluster.CommandCalls(t, "putall.apply")
	defer func() {
		if rediscluster.CommandCalls(t, "putall.apply") == moduleCalls {
			t.Error("the node with redis.module never ran PUTALL.APPLY")
		}
	}()

	put, err := a.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
		{Key: tag + "name", Value: []byte("Ada")}, {Key: tag + "email", Value: []byte("ada@example.com")}}})
	if err != nil {
		t.Fatalf("PutAll through a: %v", err)
	}
	if put.Revision == 0 {
		t.Fatalf("one-slot PutAll has no revision: %+v", put)
	}
	got, err := b.GetAll(ctx, &kv.GetAllRequest{Keys: []string{tag + "name", tag + "email"}})
	if err != nil {
		t.Fatalf("GetAll through b: %v", err)
	}
	for i, want := range []string{"Ada", "ada@example.com"} {
		it := got.Items[i]
		if !it.Found || string(it.Value) != want || it.Version != put.Revision {
			t.Fatalf("b reads %+v; want %q at version %d", it, want, put.Revision)
		}
	}

	// A create-only put of an existing key through the other node fails: one data set.
	_, err = b.Put(ctx, &kv.PutRequest{Key: tag + "name", Value: []byte("Grace"), ExpectedVersion: new(int64)})
	if !errors.Is(err, kvclient.ErrAlreadyExists) {
		t.Fatalf("create-only put of an existing key through b: %v; want ALREADY_EXISTS", err)
	}

	other := fmt.Sprintf("plain-%d", time.Now().UnixNano())
	_, err = b.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
		{Key: tag + "x", Value: []byte("1")}, {Key: other, Value: []byte("2")}}})
	var ke *kvclient.Error
	if !errors.Is(err, kvclient.ErrCrossSlot) || !errors.As(err, &ke) || !strings.Contains(ke.Message, "hash tag") ||
		!strings.Contains(ke.Message, other) {
		t.Fatalf("cross-slot ATOMIC PutAll: %v; want CROSS_SLOT naming %q and hash tags", err, other)
	}
	got, err = a.GetAll(ctx, &kv.GetAllRequest{Keys: []string{tag + "x", other}})
	if err != nil || got.Items[0].Found || got.Items[1].Found {
		t.Fatalf("after the refusal a reads %+v, %v; want both absent", got, err)
	}

	// BEST_EFFORT spans slots.
	be, err := a.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{
		{Key: tag + "x", Value: []byte("1")}, {Key: other, Value: []byte("2")}}})
	if err != nil || be.Applied != 2 {
		t.Fatalf("cross-slot BEST_EFFORT PutAll: %+v, %v", be, err)
	}
	got, err = b.GetAll(ctx, &kv.GetAllRequest{Keys: []string{tag + "x", other}})
	if err != nil || !got.Items[0].Found || !got.Items[1].Found {
		t.Fatalf("b reads %+v, %v; want both written", got, err)
	}
}

// A request_id's record lives in the cluster, shared by the nodes: a retry through the other
// node is replayed (marked so, nothing written again), across slots too; a reuse of the
// request_id for another payload in the same slot is refused with IDEMPOTENCY_CONFLICT.
func TestRetryReplayedByTheOtherNode(t *testing.T) {
	a, b := node(t, false), node(t, true)
	ctx := context.Background()
	tag := fmt.Sprintf("{retry-%d}", time.Now().UnixNano())
	id := func(s string) *string { return &s }

	put := &kv.PutRequest{Key: tag + "k", Value: []byte("v"), RequestId: id(tag + "put")}
	first, err := a.Put(ctx, put)
	if err != nil || first.Replayed {
		t.Fatalf("Put through a: %+v, %v", first, err)
	}
	again, err := b.Put(ctx, put)
	if err != nil || !again.Replayed || again.Version != first.Version || again.Created != first.Created {
		t.Fatalf("the retry through b: %+v, %v; want a replay of %+v", again, err, first)
	}

	spread := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: id(tag + "putall"), Entries: []*kv.Entry{
		{Key: tag + "x", Value: []byte("1")}, {Key: fmt.Sprintf("plain-%d", time.Now().UnixNano()), Value: []byte("2")}}}
	p1, err := b.PutAll(ctx, spread)
	if err != nil || p1.Replayed || p1.Applied != 2 {
		t.Fatalf("PutAll across slots through b: %+v, %v", p1, err)
	}
	p2, err := a.PutAll(ctx, spread)
	if err != nil || !p2.Replayed || p2.Applied != 2 || fmt.Sprint(p2.Results) != fmt.Sprint(p1.Results) {
		t.Fatalf("the retry through a: %+v, %v; want a replay of %+v", p2, err, p1)
	}

	reuse := &kv.PutRequest{Key: tag + "k", Value: []byte("other"), RequestId: put.RequestId}
	if _, err := b.Put(ctx, reuse); !errors.Is(err, kvclient.ErrIdempotencyConflict) {
		t.Fatalf("request_id reused for another payload through b: %v; want IDEMPOTENCY_CONFLICT", err)
	}
	got, err := a.Get(ctx, &kv.GetRequest{Key: tag + "k"})
	if err != nil || string(got.Item.Value) != "v" || got.Item.Version != first.Version {
		t.Fatalf("after the retries a reads %+v, %v; want \"v\" at version %d", got, err, first.Version)
	}
}

// A node configured with redis.tls (a CA, and the client certificate the nodes require) serves
// from a cluster that speaks only TLS; the same node without TLS does not start.
func TestNodeOverTLS(t *testing.T) {
	pki := tlstest.New(t, "redis")
	cl, err := rediscluster.Start(rediscluster.Options{TLSDir: filepath.Dir(pki.CA)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Stop(); err != nil {
			t.Error(err)
		}
	})
	cfg := testserver.Config(t, func(cfg *config.Config) {
		cfg.Store.Engine = "redis_cluster"
		cfg.Redis.Addrs = strings.Join(cl.Addrs, ",")
		cfg.Redis.DialTimeout = 2 * time.Second
		cfg.Gateway.Addr = ""
	})
	if s, err := server.Start(cfg, slog.New(slog.DiscardHandler)); err == nil {
		testnet.Stop(t, s)
		t.Fatal("a node without redis.tls started on a cluster that speaks only TLS")
	}
	cfg.Redis.TLS, cfg.Redis.CAFile, cfg.Redis.CertFile, cfg.Redis.KeyFile = true, pki.CA, pki.Client.Cert, pki.Client.Key
	s := testserver.Start(t, cfg, nil)
	c, err := kvclient.New([]string{s.RPCAddr()}, kvclient.WithRPCTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	put, err := c.Put(ctx, &kv.PutRequest{Key: "over-tls", Value: []byte("v")})
	if err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}
	got, err := c.Get(ctx, &kv.GetRequest{Key: "over-tls"})
	if err != nil || string(got.Item.Value) != "v" || got.Item.Version != put.Version {
		t.Fatalf("Get over TLS: %+v, %v", got, err)
	}
}
