package kvclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// policy says which failures of a call may be followed by another attempt.
type policy int

const (
	// noRetry is for a write without an idempotency key: sent twice, it could apply twice.
	noRetry policy = iota
	// retryUnanswered is for a write with an idempotency key: the server replays rather
	// than reapplies a repeat, so a call that got no answer may be sent again; an answer
	// the server gave is final.
	retryUnanswered
	// retryUnavailable is for a read: repeating it is harmless whenever the service was
	// unavailable, whether the transport or the server said so.
	retryUnavailable
)

// writePolicy is the policy of a write carrying idempotencyKey ("" for none).
func writePolicy(idempotencyKey string) policy {
	if idempotencyKey == "" {
		return noRetry
	}
	return retryUnanswered
}

// allows reports whether a call that failed with e may be attempted again.
func (p policy) allows(e *Error) bool {
	switch p {
	case retryUnavailable:
		return e.Code == kv.ErrorCode_UNAVAILABLE
	case retryUnanswered:
		return e.Code == kv.ErrorCode_UNAVAILABLE && !e.thrownByServer()
	}
	return false
}

// Backoff bounds: the first retry waits about baseBackoff, each later one twice the last, up
// to maxBackoff.
const (
	baseBackoff = 25 * time.Millisecond
	maxBackoff  = time.Second
)

// backoff returns how long to wait before the SDK's own retry number attempt+1: Backoff from
// baseBackoff up to maxBackoff.
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	return Backoff(attempt, baseBackoff, maxBackoff, retryAfter)
}

// Backoff returns how long to wait before retry number attempt+1 (counting from 0) of work the
// server refused: base doubled with each attempt, at most ceiling, jittered uniformly in the
// upper half (so clients refused together do not retry together), and never less than the
// retryAfter the server asked for. The SDK's own retries use it; so can a caller that resends
// work of its own, such as a bulk copy's entries that admission kept out.
func Backoff(attempt int, base, ceiling, retryAfter time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// Sleep waits for d, or until ctx is done; it reports whether the whole d passed. It is the
// wait between the attempts of a retry loop that gives up when its context ends.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Retry budget defaults: retries may add 10% to the calls a client makes, beyond a reserve
// of 10 that lets a client that makes few calls still retry.
const (
	defaultBudgetRatio   = 0.1
	defaultBudgetReserve = 10
)

// WithRetryBudget bounds retries across all of a Client's calls, so that during an outage
// they cannot multiply the load on the servers: every call adds ratio to a balance, capped
// at reserve+1 (and starting at reserve), and every retry takes 1 from it; a call that finds
// less than 1 there returns its failure instead of retrying. Over any run of N calls at most
// reserve + ratio*N retries are made, however many fail (defaults 0.1 and 10). WithRetries
// still bounds the retries of each call.
func WithRetryBudget(ratio float64, reserve int) Option {
	return func(o *options) { o.budgetRatio, o.budgetReserve = ratio, reserve }
}

// budgetUnit is one retry, in the budget's fixed-point units (1/1000 of a retry).
const budgetUnit = 1000

// retryBudget is the token balance of WithRetryBudget, in budgetUnit units.
type retryBudget struct {
	balance atomic.Int64
	deposit int64 // added by each call
	cap     int64
}

// newRetryBudget returns a budget of ratio retries per call beyond reserve; it refuses
// settings that cannot work.
func newRetryBudget(ratio float64, reserve int) (*retryBudget, error) {
	if ratio < 0 || reserve < 0 {
		return nil, fmt.Errorf("kvclient: retry budget must not be negative, got ratio %v and reserve %d", ratio, reserve)
	}
	b := &retryBudget{deposit: int64(ratio * budgetUnit), cap: int64(reserve+1) * budgetUnit}
	b.balance.Store(int64(reserve) * budgetUnit)
	return b, nil
}

// called adds one call's share to the balance, up to its cap.
func (b *retryBudget) called() {
	for {
		old := b.balance.Load()
		next := min(old+b.deposit, b.cap)
		if next <= old || b.balance.CompareAndSwap(old, next) {
			return
		}
	}
}

// retry takes one retry from the balance; it reports false, taking nothing, when the balance
// holds less than one.
func (b *retryBudget) retry() bool {
	for {
		old := b.balance.Load()
		if old < budgetUnit {
			return false
		}
		if b.balance.CompareAndSwap(old, old-budgetUnit) {
			return true
		}
	}
}
