// Package limiter is a token bucket for write admission, in keys per second, whose tokens also
// size batches: a caller can take as many tokens as are in hand (to apply a chunk of that size),
// and ask what batch size the bucket could take now.
//
// It is golang.org/x/time/rate underneath, driven through its explicit-time methods, so the
// clock can be replaced in tests and no test has to sleep.
package limiter

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bucket is a token bucket with a refill rate and a burst (its capacity). A rate of 0 means
// unlimited: every request is admitted at once. Safe for concurrent use; Set may change the
// rate and burst while it is in use.
type Bucket struct {
	now func() time.Time

	mu        sync.RWMutex // guards unlimited; rate.Limiter guards itself
	lim       *rate.Limiter
	unlimited bool
}

// New returns a full bucket refilling at perSecond tokens per second up to burst tokens; now is
// its clock (nil means time.Now).
func New(perSecond float64, burst int, now func() time.Time) *Bucket {
	if now == nil {
		now = time.Now
	}
	b := &Bucket{now: now, lim: rate.NewLimiter(rate.Inf, burst), unlimited: true}
	b.Set(perSecond, burst)
	return b
}

// Set changes the rate and burst; tokens in hand are kept (capped at the new burst). A bucket
// that was unlimited starts full.
func (b *Bucket) Set(perSecond float64, burst int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch t := b.now(); {
	case perSecond <= 0:
		b.unlimited = true
		b.lim.SetBurstAt(t, burst)
	case b.unlimited:
		b.unlimited = false
		b.lim = rate.NewLimiter(rate.Limit(perSecond), burst) // full: it has never been used
	default:
		b.lim.SetLimitAt(t, rate.Limit(perSecond))
		b.lim.SetBurstAt(t, burst)
	}
}

// Limits returns the current rate (0 = unlimited) and burst.
func (b *Bucket) Limits() (perSecond float64, burst int) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.unlimited {
		return 0, b.lim.Burst()
	}
	return float64(b.lim.Limit()), b.lim.Burst()
}

// Unlimited reports whether the bucket admits everything.
func (b *Bucket) Unlimited() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.unlimited
}

// Tokens returns the tokens in hand now (negative while reservations are outstanding); +Inf
// when unlimited.
func (b *Bucket) Tokens() float64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.unlimited {
		return math.Inf(1)
	}
	return b.lim.TokensAt(b.now())
}

// Grant is an admission: n tokens taken, usable after Delay.
type Grant struct {
	N     int
	Delay time.Duration
	b     *Bucket
	r     *rate.Reservation
}

// Cancel returns the grant's tokens to the bucket, as far as that is still possible (it is
// for a grant whose delay has not passed).
func (g Grant) Cancel() {
	if g.r != nil {
		g.r.CancelAt(g.b.now())
	}
}

// Reserve takes n tokens if they will be in hand within maxWait. On success the grant's Delay
// is how long the caller must wait before using them (see Wait). Otherwise nothing is taken and
// retryAfter says when n tokens will be in hand, or is negative when n is over the burst and
// never can be.
func (b *Bucket) Reserve(n int, maxWait time.Duration) (g Grant, retryAfter time.Duration, ok bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.unlimited {
		return Grant{N: n}, 0, true
	}
	if n > b.lim.Burst() {
		return Grant{}, -1, false
	}
	t := b.now()
	r := b.lim.ReserveN(t, n)
	d := r.DelayFrom(t)
	if d > maxWait {
		r.CancelAt(t)
		return Grant{}, d, false
	}
	return Grant{N: n, Delay: d, b: b, r: r}, 0, true
}

// ReserveUpTo takes as many tokens as are in hand, at least 1 and at most max, within maxWait:
// the size of the next chunk of a batch that is applied as tokens allow.
func (b *Bucket) ReserveUpTo(max int, maxWait time.Duration) (g Grant, retryAfter time.Duration, ok bool) {
	n := max
	if !b.Unlimited() {
		_, burst := b.Limits()
		n = clamp(int(b.Tokens()), 1, min(max, burst))
	}
	return b.Reserve(n, maxWait)
}

// Suggest returns the batch size the bucket can take now: the tokens in hand plus what refills
// within window, at least 1 and at most limit. An unlimited bucket suggests limit.
func (b *Bucket) Suggest(window time.Duration, limit int) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.unlimited {
		return limit
	}
	soon := b.lim.TokensAt(b.now()) + float64(b.lim.Limit())*window.Seconds()
	return clamp(int(soon), 1, min(limit, b.lim.Burst()))
}

// Wait blocks for d, or until ctx ends (returning its error).
func Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func clamp(v, lo, hi int) int {
	return max(lo, min(v, hi))
}
