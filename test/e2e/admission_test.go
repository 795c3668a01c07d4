package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// TestE2EBestEffortUnderAdmission drives concurrent BEST_EFFORT PutAlls of distinct,
// create-only keys through a tight token bucket: every key must end written exactly once (OK,
// present at the version reported) or be reported RESOURCE_EXHAUSTED (and absent), and the two
// sets together must be the input.
func TestE2EBestEffortUnderAdmission(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait, cfg.Limiter.MaxChunk = 3000, 40, 5*time.Millisecond, 16
	a, c := startTestServer(t, cfg)
	ctx := context.Background()

	const clients, batches = 6, 5
	type outcome struct {
		key     string
		code    kv.ErrorCode
		version int64
	}
	results := make([][]outcome, clients)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for b := range batches {
				req := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT}
				for i := range 10 + rng.IntN(40) {
					req.Entries = append(req.Entries, &kv.Entry{Key: fmt.Sprintf("c%d/b%d/k%d", g, b, i), Value: []byte("v"), ExpectedVersion: new(int64(0))})
				}
				resp, err := c.PutAll(ctx, req)
				if err != nil {
					t.Errorf("seed %d: PutAll: %v", seed, err)
					return
				}
				statuses, err := kvclient.Statuses(req.Entries, resp.Results, resp.Revision)
				if err != nil || resp.SuggestedBatch < 1 {
					t.Errorf("seed %d: %v, suggested %d", seed, err, resp.SuggestedBatch)
					return
				}
				for i, r := range statuses {
					if r.Key != req.Entries[i].Key {
						t.Errorf("result %d is for %q, entry is %q", i, r.Key, req.Entries[i].Key)
					}
					results[g] = append(results[g], outcome{r.Key, r.Code, r.Version})
				}
			}
		}()
	}
	wg.Wait()

	written, refused := 0, 0
	for _, rs := range results {
		keys := make([]string, len(rs))
		for i, o := range rs {
			keys[i] = o.key
		}
		for start := 0; start < len(keys); start += 100 {
			end := min(start+100, len(keys))
			got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys[start:end]})
			if err != nil {
				t.Fatal(err)
			}
			for i, it := range got.Items {
				o := rs[start+i]
				switch o.code {
				case kv.ErrorCode_OK:
					written++
					if !it.Found || it.Version != o.version {
						t.Errorf("seed %d: %s reported written at %d, reads %+v", seed, o.key, o.version, it)
					}
				case kv.ErrorCode_RESOURCE_EXHAUSTED:
					refused++
					if it.Found {
						t.Errorf("seed %d: %s reported not applied, but it is present", seed, o.key)
					}
				default:
					t.Errorf("seed %d: %s: unexpected code %v", seed, o.key, o.code)
				}
			}
		}
	}
	if int64(written) != a.Engine().Stats().Keys {
		t.Errorf("seed %d: %d keys reported written, store holds %d", seed, written, a.Engine().Stats().Keys)
	}
	if refused == 0 {
		t.Logf("seed %d: the bucket never refused (%d written); the load was lighter than the limit", seed, written)
	}
}

// TestE2EAtomicUnderAdmission sends concurrent ATOMIC batches through a bucket that cannot hold
// them all: each is applied whole or refused whole with a retry_after no longer than the refill
// of the batch.
func TestE2EAtomicUnderAdmission(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 1000, 20, 0
	_, c := startTestServer(t, cfg)
	ctx := context.Background()

	_, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: make21()})
	wantErr(t, err, kvclient.ErrTooLarge)

	const clients = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied, refused := 0, 0
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &kv.PutAllRequest{}
			keys := make([]string, 10)
			for i := range keys {
				keys[i] = fmt.Sprintf("atomic/%d/%d", g, i)
				req.Entries = append(req.Entries, &kv.Entry{Key: keys[i], Value: []byte("v")})
			}
			_, err := c.PutAll(ctx, req)
			got, gerr := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
			if gerr != nil {
				t.Error(gerr)
				return
			}
			present := 0
			for _, it := range got.Items {
				if it.Found {
					present++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				applied++
				if present != 10 {
					t.Errorf("applied batch %d: %d of 10 keys present", g, present)
				}
				return
			}
			refused++
			e := wantErr(t, err, kvclient.ErrResourceExhausted)
			if e.RetryAfter <= 0 || e.RetryAfter > 10*time.Millisecond {
				t.Errorf("retry after %v; want (0, 10ms]: 10 tokens at 1000/s", e.RetryAfter)
			}
			if present != 0 {
				t.Errorf("refused batch %d: %d keys present", g, present)
			}
		}()
	}
	wg.Wait()
	if applied < 2 || applied+refused != clients {
		t.Errorf("applied %d, refused %d; want at least the 2 batches the burst holds", applied, refused)
	}
}

func make21() []*kv.Entry {
	es := make([]*kv.Entry, 21)
	for i := range es {
		es[i] = &kv.Entry{Key: fmt.Sprint("over", i)}
	}
	return es
}

// TestE2EAdmissionHonoursCallerDeadline checks that the server knows the caller's deadline: an
// ATOMIC write whose tokens would come after it is refused at once with RESOURCE_EXHAUSTED,
// where a server unaware of it would wait for the tokens and answer after the caller left.
func TestE2EAdmissionHonoursCallerDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 10, 20, time.Minute
	_, c := startTestServer(t, cfg)
	batch := func(prefix string) *kv.PutAllRequest {
		req := &kv.PutAllRequest{}
		for i := range 20 {
			req.Entries = append(req.Entries, &kv.Entry{Key: fmt.Sprint(prefix, i), Value: []byte("v")})
		}
		return req
	}
	if _, err := c.PutAll(context.Background(), batch("first/")); err != nil {
		t.Fatal(err) // the whole burst
	}
	// The next 20 tokens take 2s to refill; the caller gives the call 1s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.PutAll(ctx, batch("second/"))
	e := wantErr(t, err, kvclient.ErrResourceExhausted)
	if e.RetryAfter <= time.Second {
		t.Errorf("retry after %v; want over the 1s the call had", e.RetryAfter)
	}
}
