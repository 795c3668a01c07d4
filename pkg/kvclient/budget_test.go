package kvclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// TestRetryBudgetBoundsAttempts checks that against a dead node, where every call fails
// with a failure the policy would retry, N calls make at most N + reserve + ratio*N
// attempts in all, not N*(1+retries).
func TestRetryBudgetBoundsAttempts(t *testing.T) {
	const (
		calls   = 50
		retries = 2
		ratio   = 0.1
		reserve = 2
	)
	var a attempts
	c, err := New([]string{testnet.DeadAddr(t)},
		WithConnectTimeout(200*time.Millisecond),
		WithRetries(retries),
		WithRetryBudget(ratio, reserve),
		WithKitexOptions(client.WithMiddleware(a.middleware)),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	for i := range calls {
		if _, err := c.Get(context.Background(), &kv.GetRequest{Key: "k"}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: got %v, want UNAVAILABLE", i, err)
		}
	}
	got := len(a.take())
	limit := calls + reserve + int(ratio*calls)
	if got > limit || got <= calls {
		t.Errorf("%d calls made %d attempts, want more than %d and at most %d (without a budget: %d)",
			calls, got, calls, limit, calls*(1+retries))
	}
}

// TestRetryBudgetArithmetic checks the balance: it starts at the reserve, grows by ratio a
// call up to reserve+1, and a retry needs a whole one.
func TestRetryBudgetArithmetic(t *testing.T) {
	b, err := newRetryBudget(0.5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !b.retry() || b.retry() {
		t.Fatal("a reserve of 1 must allow exactly one retry")
	}
	b.called()
	if b.retry() {
		t.Fatal("half a retry must not allow one")
	}
	for range 10 {
		b.called()
	}
	if !b.retry() || !b.retry() || b.retry() {
		t.Fatal("the balance must be capped at reserve+1")
	}
	if _, err := newRetryBudget(-0.1, 0); err == nil {
		t.Fatal("a negative ratio must be refused")
	}
}
