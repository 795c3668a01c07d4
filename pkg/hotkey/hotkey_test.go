package hotkey

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fakeClock is a clock tests move by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// seeded returns a Detector on a fake clock whose sampling draws from a PCG seeded with seed,
// so that a run repeats; the seed is printed when the test fails.
func seeded(t *testing.T, seed uint64, cfg Config) (*Detector, *fakeClock, *rand.Rand) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d", seed)
		}
	})
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clock.Now
	every := uint64(cfg.withDefaults().SampleEvery)
	cfg.Sample = func() bool { return r.Uint64N(every) == 0 }
	return New(cfg), clock, r
}

// workload writes n keys over span: each planted key takes share of the writes, the rest
// spread uniformly over spread keys.
func workload(d *Detector, clock *fakeClock, r *rand.Rand, n int, span time.Duration, planted []string, share float64, spread int) {
	names := make([]string, spread)
	for i := range names {
		names[i] = fmt.Sprintf("user#%d", i)
	}
	step := span / time.Duration(n)
	for range n {
		clock.Advance(step)
		x := r.Float64()
		if i := int(x / share); i < len(planted) {
			d.Observe(planted[i])
			continue
		}
		d.Observe(names[r.IntN(spread)])
	}
}

func keysOf(hot []Key) []string {
	out := make([]string, len(hot))
	for i, k := range hot {
		out[i] = k.Key
	}
	return out
}

func TestFindsPlantedKeysAndForgetsThem(t *testing.T) {
	const seed = 20261201
	d, clock, r := seeded(t, seed, Config{})
	planted := []string{"sale#42", "counter", "session#7"}
	// 600 000 writes in 40 s: each planted key 10 % of them (60 000, about 600 sampled), the
	// rest over 20 000 keys (21 writes each).
	workload(d, clock, r, 600_000, 40*time.Second, planted, 0.10, 20_000)

	hot := d.Hot()
	if got := keysOf(hot); len(got) != 3 || !d.IsHot("sale#42") || !d.IsHot("counter") || !d.IsHot("session#7") {
		t.Fatalf("hot keys %v; want exactly %v", got, planted)
	}
	for _, k := range hot {
		// 60 000 writes in the minute's window: 1 000 a second; the sample's noise is ~4 %.
		if k.Rate < 800 || k.Rate > 1200 {
			t.Errorf("%s: rate %.0f writes/s; want about 1000", k.Key, k.Rate)
		}
		if k.Share < 0.08 || k.Share > 0.12 {
			t.Errorf("%s: share %.3f; want about 0.10", k.Key, k.Share)
		}
	}

	// The planted keys go cold: uniform writes only. They stay hot for the keep-alive window…
	workload(d, clock, r, 100_000, 59*time.Second, nil, 1, 20_000)
	if len(d.Hot()) != 3 {
		t.Fatalf("hot keys %v 59 s after they cooled; want them kept for the 60 s keep-alive", keysOf(d.Hot()))
	}
	// …and are forgotten after it.
	clock.Advance(2 * time.Second)
	if got := d.Hot(); len(got) != 0 || d.IsHot("counter") {
		t.Fatalf("hot keys %v after the keep-alive window; want none", keysOf(got))
	}
}

func TestUniformWritesMakeNoKeyHot(t *testing.T) {
	d, clock, r := seeded(t, 7, Config{})
	// 1 M writes in a minute over 2 000 keys: 500 each, 5 sampled each, far below 500.
	workload(d, clock, r, 1_000_000, time.Minute, nil, 1, 2_000)
	if got := d.Hot(); len(got) != 0 {
		t.Fatalf("uniform writes made %v hot", keysOf(got))
	}
}

func TestBoundedInKeysAndBytes(t *testing.T) {
	d, clock, _ := seeded(t, 1, Config{SampleEvery: 1, Threshold: 2, MaxKeys: 4, MaxKeyBytes: 8})
	long := "0123456789abcdef"
	for i := range 10 {
		for range 3 + i { // later keys are hotter, so they replace the coolest
			clock.Advance(time.Millisecond)
			d.Observe(fmt.Sprintf("%s-%d", long, i))
		}
	}
	hot := d.Hot()
	if len(hot) != 4 {
		t.Fatalf("%d hot keys kept; want the cap, 4", len(hot))
	}
	for _, k := range hot {
		if len(k.Key) > 8 {
			t.Errorf("hot key %q kept with %d bytes; want at most 8", k.Key, len(k.Key))
		}
	}
}

func TestWindowsAge(t *testing.T) {
	d, clock, _ := seeded(t, 1, Config{SampleEvery: 1, Threshold: 100, Window: time.Minute})
	for range 99 {
		d.Observe("k")
	}
	// Two windows later nothing of those 99 remains: one more write is not the 100th.
	clock.Advance(2 * time.Minute)
	d.Observe("k")
	if d.IsHot("k") {
		t.Fatal("counts from two windows ago made the key hot")
	}
	// Within the window they add up.
	for range 99 {
		d.Observe("k")
	}
	if !d.IsHot("k") {
		t.Fatal("100 writes within one window did not make the key hot")
	}
}

// BenchmarkObserve is the write path's cost per key (sampled 1 in 100); BenchmarkSampleOnly
// is the same loop deciding to sample and nothing else, for comparison.
func BenchmarkObserve(b *testing.B) { benchObserve(b, Config{}) }

func BenchmarkObserveNoneSampled(b *testing.B) {
	benchObserve(b, Config{Sample: func() bool { return false }})
}

func benchObserve(b *testing.B, cfg Config) {
	d := New(cfg)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user#%d", i)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d.Observe(keys[i&1023])
			i++
		}
	})
}
