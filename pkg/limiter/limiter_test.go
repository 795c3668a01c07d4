package limiter

import (
	"context"
	"math"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newBucket(perSecond float64, burst int) (*Bucket, *clock) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(perSecond, burst, c.now), c
}

func TestBurstThenRefill(t *testing.T) {
	b, c := newBucket(100, 50) // 100 tokens/s: one per 10ms
	if got := b.Tokens(); got != 50 {
		t.Fatalf("new bucket holds %v tokens; want 50 (full)", got)
	}
	g, _, ok := b.Reserve(50, 0)
	if !ok || g.Delay != 0 {
		t.Fatalf("full burst: ok %v delay %v", ok, g.Delay)
	}
	if _, retry, ok := b.Reserve(10, 0); ok || retry != 100*time.Millisecond {
		t.Fatalf("empty bucket: ok %v retry %v; want refused, 100ms", ok, retry)
	}
	if got := b.Tokens(); got != 0 {
		t.Fatalf("a refused reservation took tokens: %v left", got)
	}
	c.advance(250 * time.Millisecond)
	if got := b.Tokens(); got != 25 {
		t.Fatalf("after 250ms: %v tokens; want 25", got)
	}
	c.advance(time.Hour)
	if got := b.Tokens(); got != 50 {
		t.Fatalf("refill overflowed the burst: %v", got)
	}
}

func TestReserveWaitsWithinMaxWait(t *testing.T) {
	b, _ := newBucket(1000, 10)
	if _, _, ok := b.Reserve(10, 0); !ok {
		t.Fatal("burst refused")
	}
	g, _, ok := b.Reserve(5, 10*time.Millisecond)
	if !ok || g.Delay != 5*time.Millisecond {
		t.Fatalf("5 tokens at 1000/s: ok %v delay %v; want granted after 5ms", ok, g.Delay)
	}
	// The next caller queues behind the first: 5 more tokens are 10ms away.
	if _, retry, ok := b.Reserve(5, 9*time.Millisecond); ok || retry != 10*time.Millisecond {
		t.Fatalf("queued reservation: ok %v retry %v; want refused, 10ms", ok, retry)
	}
	g.Cancel()
	if got := b.Tokens(); got != 0 {
		t.Fatalf("after cancelling the pending grant: %v tokens; want 0", got)
	}
}

func TestOverBurstNeverFits(t *testing.T) {
	b, _ := newBucket(10, 8)
	if _, retry, ok := b.Reserve(9, time.Hour); ok || retry >= 0 {
		t.Fatalf("over burst: ok %v retry %v; want refused with negative retry", ok, retry)
	}
}

func TestReserveUpTo(t *testing.T) {
	b, c := newBucket(100, 40)
	g, _, ok := b.ReserveUpTo(16, 0)
	if !ok || g.N != 16 {
		t.Fatalf("plenty of tokens: %+v %v; want 16 (the max)", g, ok)
	}
	g, _, ok = b.ReserveUpTo(100, 0)
	if !ok || g.N != 24 {
		t.Fatalf("24 left: took %d; want 24", g.N)
	}
	// Empty: a chunk is at least one token, which is 10ms away.
	if _, retry, ok := b.ReserveUpTo(100, 0); ok || retry != 10*time.Millisecond {
		t.Fatalf("empty: ok %v retry %v", ok, retry)
	}
	g, _, ok = b.ReserveUpTo(100, 10*time.Millisecond)
	if !ok || g.N != 1 || g.Delay != 10*time.Millisecond {
		t.Fatalf("empty with wait: %+v %v; want 1 token after 10ms", g, ok)
	}
	c.advance(60 * time.Millisecond)
	if g, _, _ := b.ReserveUpTo(100, 0); g.N != 5 {
		t.Fatalf("after 60ms: took %d; want 5", g.N)
	}
}

func TestSuggest(t *testing.T) {
	b, c := newBucket(1000, 100)
	if got := b.Suggest(10*time.Millisecond, 64); got != 64 {
		t.Fatalf("full bucket: suggest %d; want the cap 64", got)
	}
	b.Reserve(100, 0)
	if got := b.Suggest(10*time.Millisecond, 64); got != 10 {
		t.Fatalf("empty bucket: suggest %d; want 10 (refill within 10ms)", got)
	}
	c.advance(20 * time.Millisecond)
	if got := b.Suggest(10*time.Millisecond, 64); got != 30 {
		t.Fatalf("suggest %d; want 30", got)
	}
	b.Set(1, 5) // slow: tokens in hand stay, burst caps
	if got := b.Suggest(10*time.Millisecond, 64); got != 5 {
		t.Fatalf("after Set(1, 5): suggest %d; want 5 (the burst)", got)
	}
}

func TestUnlimitedAndSet(t *testing.T) {
	b, _ := newBucket(0, 10)
	if !b.Unlimited() || !math.IsInf(b.Tokens(), 1) {
		t.Fatal("rate 0 is not unlimited")
	}
	if g, _, ok := b.Reserve(1_000_000, 0); !ok || g.Delay != 0 {
		t.Fatal("unlimited bucket refused")
	}
	if got := b.Suggest(time.Second, 77); got != 77 {
		t.Fatalf("unlimited suggest %d; want the cap", got)
	}
	b.Set(50, 20)
	if r, burst := b.Limits(); r != 50 || burst != 20 || b.Tokens() != 20 {
		t.Fatalf("after Set: rate %v burst %d tokens %v; want 50, 20, full", r, burst, b.Tokens())
	}
	b.Set(0, 20)
	if r, _ := b.Limits(); r != 0 || !b.Unlimited() {
		t.Fatal("Set(0) did not make it unlimited")
	}
}

func TestWait(t *testing.T) {
	if err := Wait(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Wait on a cancelled context = %v", err)
	}
	if err := Wait(context.Background(), time.Microsecond); err != nil {
		t.Fatal(err)
	}
}
