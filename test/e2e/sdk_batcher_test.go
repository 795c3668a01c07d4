package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/putallkv/putallkv/biz/service"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// batchLog records the events a Batcher's observer reports and checks, as each arrives, the
// relations its sizing promises. They are about the order of events, never their timing: the
// observer is called in the order the controller took the outcomes in, so each event's
// target follows from the previous one.
type batchLog struct {
	t       *testing.T
	ceiling int
	also    func(kvclient.BatchEvent) // called after the checks, if not nil

	mu      sync.Mutex
	events  []kvclient.BatchEvent
	prev    int          // the target before the latest event
	targets map[int]bool // every target the controller has had
}

// watchBatches returns a batchLog for a Batcher sized WithBatchSize(initial, ceiling), and
// the option that feeds it.
func watchBatches(t *testing.T, initial, ceiling int, also func(kvclient.BatchEvent)) (*batchLog, kvclient.BatcherOption) {
	l := &batchLog{t: t, ceiling: ceiling, also: also, prev: initial, targets: map[int]bool{initial: true}}
	return l, kvclient.WithBatchObserver(l.observe)
}

func (l *batchLog) observe(ev kvclient.BatchEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, prev := len(l.events), l.prev
	bad := func(format string, args ...any) {
		l.t.Errorf("event %d %+v (target before %d): %s", n, ev, prev, fmt.Sprintf(format, args...))
	}
	// A batch is cut to the target of the moment, so its size is bounded by a target the
	// controller had before, which was never above the suggestion it came from.
	if ev.Size < 1 || ev.Size > ev.Limit || !l.targets[ev.Limit] {
		bad("a batch must hold between 1 and its limit, a target the controller had")
	}
	if ev.Target < 1 || ev.Target > l.ceiling {
		bad("target outside [1, %d]", l.ceiling)
	}
	if ev.Suggested > 0 && ev.Target > int(ev.Suggested) {
		bad("target above the server's suggestion")
	}
	if ev.Refused > 0 && ev.Target > max(1, prev/2) {
		bad("a refusal must at least halve the target")
	}
	if ev.Target > prev+1 {
		bad("the target grows by one at most")
	}
	if ev.Fallback && (ev.Size != 1 || ev.Limit != 1) {
		bad("in fallback a call carries one key")
	}
	l.events = append(l.events, ev)
	l.targets[ev.Target] = true
	l.prev = ev.Target
	if l.also != nil {
		l.also(ev)
	}
}

// since returns a copy of the events from the n-th on.
func (l *batchLog) since(n int) []kvclient.BatchEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]kvclient.BatchEvent(nil), l.events[n:]...)
}

// count returns how many events have arrived.
func (l *batchLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// putConcurrently has goroutines each Put puts distinct keys (named after prefix) one after
// the other through b, and returns the version each Put got by key; every Put must succeed.
func putConcurrently(ctx context.Context, t *testing.T, b *kvclient.Batcher, prefix string, goroutines, puts int) map[string]int64 {
	t.Helper()
	var mu sync.Mutex
	got := make(map[string]int64, goroutines*puts)
	failed := 0
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range puts {
				key := fmt.Sprintf("%s/g%03d/k%03d", prefix, g, i)
				v, err := b.Put(ctx, key, []byte(key))
				mu.Lock()
				if err != nil {
					if failed++; failed <= 5 {
						t.Errorf("Put %s: %v", key, err)
					}
				} else {
					got[key] = v
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed > 0 {
		t.Errorf("%d of %d Puts failed", failed, goroutines*puts)
	}
	return got
}

// wantStored fails unless every key in want is stored at the version its Put returned.
func wantStored(ctx context.Context, t *testing.T, c *kvclient.Client, want map[string]int64) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	for start := 0; start < len(keys); start += 100 {
		chunk := keys[start:min(start+100, len(keys))]
		got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: chunk})
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range got.Items {
			if !it.Found || it.Version != want[chunk[i]] || string(it.Value) != chunk[i] {
				t.Errorf("%s: Put returned version %d, the store has %+v", chunk[i], want[chunk[i]], it)
			}
		}
	}
}

// TestE2EBatcherFollowsAdmission drives 10 000 Puts from 100 goroutines through a Batcher
// against the real server with a tight token bucket that refuses what it cannot admit at
// once: every caller gets its own key's version, and the batch sizes follow the controller,
// which follows the server's suggestions and refusals (checked by batchLog). The target
// latency is out of reach, so that the outcome does not depend on the machine's speed; the
// latency rule is covered by TestBatcherAIMD.
func TestE2EBatcherFollowsAdmission(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 5000, 200, 0
	a, c := startTestServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	log, observe := watchBatches(t, 16, 1000, nil)
	b := c.NewBatcher(kvclient.WithBatchSize(16, 1000), kvclient.WithLinger(time.Millisecond),
		kvclient.WithTargetLatency(time.Minute), observe)
	got := putConcurrently(ctx, t, b, "follow", 100, 100)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	wantStored(ctx, t, c, got)
	if keys := a.Engine().Stats().Keys; keys != int64(len(got)) || len(got) != 10000 {
		t.Errorf("%d Puts succeeded, the store holds %d keys; want 10000 of each", len(got), keys)
	}
	sent, batched, refused, maxSize := 0, 0, 0, 0
	for _, ev := range log.since(0) {
		sent += ev.Size - ev.Refused
		maxSize = max(maxSize, ev.Size)
		if ev.Size > 1 {
			batched++
		}
		if ev.Refused > 0 {
			refused++
		}
	}
	if batched == 0 {
		t.Error("no call carried more than one key")
	}
	if sent < 10000 {
		t.Errorf("calls carried %d entries that were not refused, want at least the 10000 Puts", sent)
	}
	t.Logf("%d calls, %d of them batches (largest %d), %d with refusals", log.count(), batched, maxSize, refused)
}

// TestE2EBatcherFallbackAndRecovery starves the Batcher with a tiny bucket until it falls
// back to one key per call, then raises the limit at run time: the batcher must leave the
// fallback and batch again, and every Put, before and after, must be written once.
func TestE2EBatcherFallbackAndRecovery(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 50, 5, 0
	a, c := startTestServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	fellBack := make(chan struct{})
	var once sync.Once
	log, observe := watchBatches(t, 16, 1000, func(ev kvclient.BatchEvent) {
		if ev.Fallback {
			once.Do(func() { close(fellBack) })
		}
	})
	b := c.NewBatcher(kvclient.WithBatchSize(16, 1000), kvclient.WithLinger(2*time.Millisecond),
		kvclient.WithTargetLatency(time.Minute), observe)
	defer func() { _ = b.Close() }()

	starved := make(chan map[string]int64, 1)
	go func() { starved <- putConcurrently(ctx, t, b, "starved", 50, 10) }()
	select {
	case <-fellBack:
	case <-ctx.Done():
		t.Fatalf("no call in fallback before the deadline; events: %+v", log.since(0))
	}
	// 500 keys at 50 a second cannot all be written before this point, so calls answered
	// after the raise remain, and the first of them (no refusal, suggestion 100) ends the
	// fallback.
	a.Service().SetAdmission(service.AdmissionSettings{Rate: 0, Burst: 1000, MaxChunk: 1000})
	got := <-starved
	afterStarved := log.count()
	for k, v := range putConcurrently(ctx, t, b, "fed", 50, 10) {
		got[k] = v
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	wantStored(ctx, t, c, got)
	if keys := a.Engine().Stats().Keys; keys != int64(len(got)) || len(got) != 1000 {
		t.Errorf("%d Puts succeeded, the store holds %d keys; want 1000 of each", len(got), keys)
	}
	batched := 0
	for _, ev := range log.since(afterStarved) {
		if ev.Fallback || ev.Refused > 0 {
			t.Errorf("event %+v after the limit was raised and the fallback left", ev)
		}
		if ev.Size > 1 {
			batched++
		}
	}
	if batched == 0 {
		t.Errorf("no batch of more than one key after the limit was raised: %+v", log.since(afterStarved))
	}
}

// TestE2EBatcherHonoursDeadline checks that a Put whose context ends while the server refuses
// its key returns with the context's error (an *Error of code UNAVAILABLE wrapping
// context.DeadlineExceeded), and that its key is never written afterwards.
func TestE2EBatcherHonoursDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 1, 1, 0
	a, c := startTestServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Drain the bucket, then slow its refill to a token every quarter of an hour, so that no
	// key is admitted while the test runs, however slow the machine.
	if _, err := c.Put(ctx, &kv.PutRequest{Key: "drain", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	a.Service().SetAdmission(service.AdmissionSettings{Rate: 0.001, Burst: 1, MaxChunk: 1000})

	events := make(chan kvclient.BatchEvent, 100)
	b := c.NewBatcher(kvclient.WithBatchObserver(func(ev kvclient.BatchEvent) { events <- ev }))
	defer func() { _ = b.Close() }()
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	errs := make(chan error, 1)
	go func() {
		_, err := b.Put(short, "late", []byte("v"))
		errs <- err
	}()
	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
		t.Fatal("Put did not return after its context ended")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put = %v, want context.DeadlineExceeded", err)
	}
	wantErr(t, err, kvclient.ErrUnavailable)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	got, gerr := c.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"late"}})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if got.Items[0].Found || a.Engine().Stats().Keys != 1 {
		t.Fatalf("late = %+v, %d keys stored; want it absent, only the drain key", got.Items[0], a.Engine().Stats().Keys)
	}
	close(events)
	n := 0
	for ev := range events {
		n++
		t.Logf("call %+v", ev)
	}
	if n != 1 {
		t.Fatalf("%d calls, want 1: the refused key must not be sent again once its caller has gone", n)
	}
}
