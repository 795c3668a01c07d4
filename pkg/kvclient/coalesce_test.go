package kvclient

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/rpcinfo"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// manyServer answers PutAll and PutAllMany in a Kitex middleware of a real Client (nothing
// reaches the network): every call applies at a revision of its own, except that a call
// whose first key starts with "fail" fails its precondition. A single PutAll waits at gate
// (when set) after saying so on entered, so that tests can hold the one round trip in flight
// while calls queue.
type manyServer struct {
	gate    chan struct{}
	entered chan struct{}

	mu         sync.Mutex
	rev        int64
	revOf      map[string]int64 // first key of a call -> its revision
	singles    []string         // first key of each PutAll sent by itself
	rounds     [][]string       // first key of each call, per PutAllMany
	refuseMany *kv.KVError      // thrown for every PutAllMany when set
	timeouts   []time.Duration  // the RPC timeout each PutAllMany carried
}

func (s *manyServer) middleware(endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		switch args := req.(type) {
		case *kv.KVServicePutAllArgs:
			select { // the first call says so; later ones need not
			case s.entered <- struct{}{}:
			default:
			}
			<-s.gate
			s.mu.Lock()
			defer s.mu.Unlock()
			s.singles = append(s.singles, args.Req.Entries[0].Key)
			r, err := s.apply(args.Req)
			resp.(*kv.KVServicePutAllResult).Success, resp.(*kv.KVServicePutAllResult).Err = r, err
		case *kv.KVServicePutAllManyArgs:
			s.mu.Lock()
			defer s.mu.Unlock()
			s.timeouts = append(s.timeouts, rpcinfo.GetRPCInfo(ctx).Config().RPCTimeout())
			var keys []string
			for _, c := range args.Req.Calls {
				keys = append(keys, c.Entries[0].Key)
			}
			s.rounds = append(s.rounds, keys)
			if s.refuseMany != nil {
				resp.(*kv.KVServicePutAllManyResult).Err = s.refuseMany
				return nil
			}
			out := &kv.PutAllManyResponse{}
			for _, c := range args.Req.Calls {
				r, err := s.apply(c)
				out.Outcomes = append(out.Outcomes, &kv.PutAllOutcome{Response: r, Error: err})
			}
			resp.(*kv.KVServicePutAllManyResult).Success = out
		default:
			return fmt.Errorf("manyServer: unexpected %T", req)
		}
		return nil
	}
}

func (s *manyServer) apply(req *kv.PutAllRequest) (*kv.PutAllResponse, *kv.KVError) {
	key := req.Entries[0].Key
	if strings.HasPrefix(key, "fail") {
		return nil, &kv.KVError{Code: kv.ErrorCode_VERSION_MISMATCH, Message: "key " + key + ": version mismatch"}
	}
	s.rev++
	s.revOf[key] = s.rev
	return &kv.PutAllResponse{Revision: s.rev, Applied: int32(len(req.Entries))}, nil
}

// revisionOf returns the revision the call whose first key is key was applied at, 0 if none.
func (s *manyServer) revisionOf(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revOf[key]
}

// newCoalescingClient is a Client coalescing over at most one round trip, answered by a
// manyServer whose single PutAll calls wait at a gate.
func newCoalescingClient(t *testing.T, opts ...Option) (*Client, *manyServer) {
	t.Helper()
	s := &manyServer{gate: make(chan struct{}), entered: make(chan struct{}, 1), revOf: map[string]int64{}}
	opts = append([]Option{WithCoalescing(1), WithRetries(0), WithKitexOptions(client.WithMiddleware(s.middleware))}, opts...)
	c, err := New([]string{testnet.DeadAddr(t)}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c, s
}

func putAllOf(key string) *kv.PutAllRequest {
	return &kv.PutAllRequest{Entries: []*kv.Entry{{Key: key, Value: []byte("v")}}}
}

// outcome is what one caller's PutAll returned.
type outcome struct {
	resp *kv.PutAllResponse
	err  error
}

// holdRoundTrip starts a call of key "held" that takes the one round trip and waits at the
// gate; calls made meanwhile queue. It returns a function that releases the gate and returns
// the held call's outcome.
func holdRoundTrip(t *testing.T, c *Client, s *manyServer) (release func() outcome) {
	t.Helper()
	done := make(chan outcome, 1)
	go func() {
		r, err := c.PutAll(context.Background(), putAllOf("held"))
		done <- outcome{r, err}
	}()
	<-s.entered
	return func() outcome {
		close(s.gate)
		return <-done
	}
}

// queueCalls starts a PutAll for each key, each with its own context from ctx(i), and waits
// until all of them are queued behind the held round trip.
func queueCalls(t *testing.T, c *Client, keys []string, ctx func(int) context.Context) []chan outcome {
	t.Helper()
	before := queuedCalls(c)
	outs := make([]chan outcome, len(keys))
	for i, k := range keys {
		outs[i] = make(chan outcome, 1)
		go func() {
			r, err := c.PutAll(ctx(i), putAllOf(k))
			outs[i] <- outcome{r, err}
		}()
		for queuedCalls(c) < before+i+1 {
			runtime.Gosched()
		}
	}
	return outs
}

func queuedCalls(c *Client) int {
	c.coalescer.mu.Lock()
	defer c.coalescer.mu.Unlock()
	return len(c.coalescer.queue)
}

func background(int) context.Context { return context.Background() }

func keysOf(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return keys
}

// TestCoalescingGathersWaitingCalls checks that the calls made while the one round trip is in
// flight go together in the next, each answered with its own outcome: a failed precondition
// to its caller alone, and no call answered with another's revision.
func TestCoalescingGathersWaitingCalls(t *testing.T) {
	c, s := newCoalescingClient(t)
	release := holdRoundTrip(t, c, s)
	keys := append(keysOf("k", 8), "fail-1", "k-last")
	outs := queueCalls(t, c, keys, background)
	if o := release(); o.err != nil || o.resp.Revision != 1 {
		t.Fatalf("held call: %+v", o)
	}
	for i, k := range keys {
		o := <-outs[i]
		if k == "fail-1" {
			if !errors.Is(o.err, ErrVersionMismatch) {
				t.Errorf("%s: err = %v; want VERSION_MISMATCH", k, o.err)
			}
			continue
		}
		if o.err != nil || o.resp.Revision != s.revisionOf(k) {
			t.Errorf("%s: %+v, %v; want revision %d", k, o.resp, o.err, s.revisionOf(k))
		}
	}
	if len(s.singles) != 1 || len(s.rounds) != 1 || len(s.rounds[0]) != len(keys) {
		t.Fatalf("singles %v, round trips %v; want the held call alone, then every queued call in one", s.singles, s.rounds)
	}
}

// TestCoalescingBoundsRoundTrips checks that a round trip carries at most maxCoalescedCalls
// calls, the rest going in the next, in the order they queued.
func TestCoalescingBoundsRoundTrips(t *testing.T) {
	c, s := newCoalescingClient(t)
	release := holdRoundTrip(t, c, s)
	keys := keysOf("k", maxCoalescedCalls+6)
	outs := queueCalls(t, c, keys, background)
	release()
	for i := range keys {
		if o := <-outs[i]; o.err != nil {
			t.Fatal(o.err)
		}
	}
	if len(s.rounds) != 2 || len(s.rounds[0]) != maxCoalescedCalls || len(s.rounds[1]) != 6 || s.rounds[1][0] != keys[maxCoalescedCalls] {
		t.Fatalf("round trips of %d calls; want %d then the last 6", lens(s.rounds), maxCoalescedCalls)
	}
}

func lens(rounds [][]string) []int {
	n := make([]int, len(rounds))
	for i, r := range rounds {
		n[i] = len(r)
	}
	return n
}

// TestCoalescingCallerGivesUp checks that a queued call whose context ends returns at once
// with an error that says so, and is never sent.
func TestCoalescingCallerGivesUp(t *testing.T) {
	c, s := newCoalescingClient(t)
	release := holdRoundTrip(t, c, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outs := queueCalls(t, c, []string{"gives-up", "stays"}, func(i int) context.Context {
		if i == 0 {
			return ctx
		}
		return context.Background()
	})
	cancel()
	if o := <-outs[0]; !errors.Is(o.err, context.Canceled) || !errors.Is(o.err, ErrUnavailable) {
		t.Fatalf("canceled call: err = %v; want UNAVAILABLE wrapping context.Canceled", o.err)
	}
	release()
	if o := <-outs[1]; o.err != nil {
		t.Fatal(o.err)
	}
	if s.revisionOf("gives-up") != 0 || len(s.rounds) != 0 || len(s.singles) != 2 {
		t.Fatalf("singles %v, round trips %v; want the canceled call never sent", s.singles, s.rounds)
	}
}

// TestCoalescingSplitsRefusedRoundTrip checks that a round trip the server refuses as a
// whole (here: a server allowing fewer calls than the client sent) is sent again call by
// call.
func TestCoalescingSplitsRefusedRoundTrip(t *testing.T) {
	c, s := newCoalescingClient(t)
	s.refuseMany = &kv.KVError{Code: kv.ErrorCode_TOO_LARGE, Message: "3 calls are over the limit of 2 calls"}
	release := holdRoundTrip(t, c, s)
	keys := keysOf("k", 3)
	outs := queueCalls(t, c, keys, background)
	release()
	for i, k := range keys {
		if o := <-outs[i]; o.err != nil || o.resp.Revision != s.revisionOf(k) {
			t.Errorf("%s: %+v, %v", k, o.resp, o.err)
		}
	}
	if len(s.rounds) != 1 || len(s.singles) != 1+len(keys) {
		t.Fatalf("singles %v, round trips %v; want the refused round trip resent call by call", s.singles, s.rounds)
	}
}

// TestCoalescingRoundTripDeadline checks that a round trip lasts until the latest deadline
// among its calls (none of them is cut short by another's), bounded by the RPC timeout.
func TestCoalescingRoundTripDeadline(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rpcTimeout time.Duration
		deadlines  []time.Duration // 0: no deadline
		want       time.Duration
	}{
		{"latest of the calls", 0, []time.Duration{time.Minute, 2 * time.Minute}, 2 * time.Minute},
		{"RPC timeout first", 30 * time.Second, []time.Duration{time.Minute, 2 * time.Minute}, 30 * time.Second},
		{"a call without deadline", 30 * time.Second, []time.Duration{time.Minute, 0}, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := newCoalescingClient(t, WithRPCTimeout(tc.rpcTimeout))
			release := holdRoundTrip(t, c, s)
			outs := queueCalls(t, c, keysOf("k", len(tc.deadlines)), func(i int) context.Context {
				if tc.deadlines[i] == 0 {
					return context.Background()
				}
				ctx, cancel := context.WithTimeout(context.Background(), tc.deadlines[i])
				t.Cleanup(cancel)
				return ctx
			})
			release()
			for _, o := range outs {
				if o := <-o; o.err != nil {
					t.Fatal(o.err)
				}
			}
			// The timeout is what was left when the round trip was sent: at most the want,
			// and less only by the time this test took (far less than a second).
			if got := s.timeouts[0]; got > tc.want+time.Millisecond || got < tc.want-time.Second {
				t.Fatalf("round trip RPC timeout %v; want about %v", got, tc.want)
			}
		})
	}
}

func TestEveryIdempotencyKey(t *testing.T) {
	withID := &kv.PutAllRequest{RequestId: new("a")}
	for _, tc := range []struct {
		name  string
		calls []*kv.PutAllRequest
		want  bool
	}{
		{"no calls", nil, false},
		{"every call has one", []*kv.PutAllRequest{withID, withID}, true},
		{"one call lacks one", []*kv.PutAllRequest{withID, {}}, false},
	} {
		if got := everyIdempotencyKey(&kv.PutAllManyRequest{Calls: tc.calls}) != ""; got != tc.want {
			t.Errorf("%s: retryable %v; want %v", tc.name, got, tc.want)
		}
	}
}

// TestCoalescingIsTheDefault makes Clients with no coalescing option: they have
// DefaultCoalescing round trips per server (and their Batchers as many in flight), and
// WithCoalescing(0) turns coalescing off.
func TestCoalescingIsTheDefault(t *testing.T) {
	for _, servers := range []int{1, 3} {
		addrs := make([]string, servers)
		for i := range addrs {
			addrs[i] = testnet.DeadAddr(t)
		}
		c, err := New(addrs)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if want := DefaultCoalescing * servers; c.coalescer == nil || c.coalescer.roundTrips != want {
			t.Fatalf("%d servers: default client coalescer %+v; want %d round trips", servers, c.coalescer, want)
		}
		b := c.NewBatcher()
		defer b.Close()
		if b.opt.maxInFlight != servers {
			t.Fatalf("%d servers: the Batcher's default round trips in flight %d; want %d", servers, b.opt.maxInFlight, servers)
		}
	}
	off, err := New([]string{testnet.DeadAddr(t)}, WithCoalescing(0))
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if off.coalescer != nil {
		t.Fatal("WithCoalescing(0) left coalescing on")
	}
}
