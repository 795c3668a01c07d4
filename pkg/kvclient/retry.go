package kvclient

import (
	"context"
	"math/rand/v2"
	"time"

	"putallkv/kitex_gen/kv"
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

// backoff returns how long to wait before retry number attempt+1: exponential with jitter
// (uniform in the upper half, so clients that failed together do not retry together), and
// never less than the retryAfter the server asked for.
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := baseBackoff
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// sleep waits for d, or until ctx is done; it reports whether the whole d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
