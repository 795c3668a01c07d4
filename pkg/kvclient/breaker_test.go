package kvclient_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/kerrors"

	"github.com/putallkv/putallkv/internal/testdiscovery"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// startServer runs the real server in-process on an ephemeral loopback port until t ends,
// and returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	return testserver.Start(t, testserver.Config(t, nil), nil).RPCAddr()
}

// getMissing reads a key no server holds n times through c, failing t unless every call
// gets the servers' answer, NOT_FOUND (an API error, which must not trip a breaker).
func getMissing(t *testing.T, c *kvclient.Client, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.Get(context.Background(), &kv.GetRequest{Key: "absent"}); !errors.Is(err, kvclient.ErrNotFound) {
			t.Fatalf("call %d: got %v, want NOT_FOUND", i, err)
		}
	}
}

// TestBreakerSkipsDeadNode checks, with two real servers and a dead address behind one
// client, that once the dead node's breaker opens no attempt goes to it, and that no call
// fails before or after. With the breaker off the dead node keeps being dialled.
func TestBreakerSkipsDeadNode(t *testing.T) {
	live1, live2, dead := startServer(t), startServer(t), testnet.DeadAddr(t)
	for _, tc := range []struct {
		name    string
		opts    []kvclient.Option
		skipped bool // whether the dead node stops being tried
	}{
		{"default", nil, true},
		{"off", []kvclient.Option{kvclient.WithCircuitBreaker(0, 0)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testdiscovery.NewSends()
			c, err := kvclient.New([]string{live1, live2, dead}, append(tc.opts,
				kvclient.WithConnectTimeout(time.Second),
				kvclient.WithKitexOptions(client.WithInstanceMW(s.Middleware)))...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()

			// Calls until the dead node has been picked as often as the breaker's minimum
			// samples (10), each of those a failed dial; the load balancer picks at random.
			for i := 0; s.To(dead) < 10; i++ {
				if i == 2000 {
					t.Fatalf("dead node tried %d times in %d calls", s.To(dead), i)
				}
				getMissing(t, c, 1)
			}
			before := s.To(dead)
			// The breaker stays open for 5s before it probes; 300 calls take far less.
			getMissing(t, c, 300)
			after := s.To(dead) - before
			if tc.skipped && after != 0 {
				t.Errorf("dead node tried %d times after its breaker opened", after)
			}
			if !tc.skipped && after == 0 {
				t.Errorf("dead node never tried again without a breaker")
			}
			t.Logf("attempts to the dead node: %d, then %d in 300 calls; live nodes: %d and %d",
				before, after, s.To(live1), s.To(live2))
		})
	}
}

// TestBreakerErrorSaysWhy checks that a call refused because every server's breaker is open
// fails UNAVAILABLE at once, and still says why the server was taken out: its last failure.
func TestBreakerErrorSaysWhy(t *testing.T) {
	c, err := kvclient.New([]string{testnet.DeadAddr(t), testnet.DeadAddr(t)}, kvclient.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for i := 0; ; i++ {
		_, err := c.Get(context.Background(), &kv.GetRequest{Key: "k"})
		if !errors.Is(err, kvclient.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("call %d: err = %v, want UNAVAILABLE saying the connection was refused", i, err)
		}
		if errors.Is(err, kerrors.ErrCircuitBreak) {
			break
		}
		if i == 20 {
			t.Fatalf("no breaker open after %d calls to dead servers: %v", i, err)
		}
	}
}
