package kvclient

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cloudwego/kitex/client/callopt"
	"github.com/cloudwego/kitex/pkg/remote"
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/traceid"
)

// Bounds of one coalesced round trip: at most maxCoalescedCalls calls and, past the first
// call, about maxCoalescedBytes of keys and values (well under the server's default request
// bound of 8 MiB).
const (
	maxCoalescedCalls = 64
	maxCoalescedBytes = 1 << 20
)

// coalescer gathers the PutAll calls of concurrent callers into PutAllMany round trips, at
// most roundTrips of them in flight at once, each on a connection of its own. A call that
// finds a round trip free is sent by itself, on its caller's goroutine, as it would be
// without coalescing; a call that finds them all in use waits in the queue, and when a round
// trip ends, the calls queued meanwhile go together in the next. So a lone caller pays
// nothing, and under load every round trip carries whatever queued while the last one was
// out: the framework's cost of a round trip (encoding, system calls, the server's goroutine)
// is shared by many calls.
//
// Each call keeps its own semantics on the server (see PutAllManyRequest), its own retry
// policy and its own deadline: a caller whose context ends stops waiting (a call still in
// the queue is not sent). A round trip is bounded by the latest deadline among its calls and
// by the client's RPC timeout, and carries a trace id of its own.
type coalescer struct {
	many    func(context.Context, *kv.PutAllManyRequest, ...callopt.Option) (*kv.PutAllManyResponse, error)
	single  func(context.Context, *kv.PutAllRequest, ...callopt.Option) (*kv.PutAllResponse, error)
	timeout time.Duration // the client's RPC timeout; 0 for none
	metrics *Metrics      // records each round trip's size; nil for none
	tracer  trace.Tracer  // makes each round trip a span linked to its calls'; nil for none

	mu         sync.Mutex
	roundTrips int // the most in flight at once
	inFlight   int
	queue      []*queuedCall
}

// queuedCall is a call waiting for a round trip, and then its outcome.
type queuedCall struct {
	ctx  context.Context // the caller's (its deadline bounds the round trip)
	req  *kv.PutAllRequest
	resp *kv.PutAllResponse
	err  error
	done chan struct{} // closed once resp or err is set
}

// putAll sends req alone when a round trip is free, else queues it for the next one. ctx is
// what attempt hands Kitex (see kitexContext).
func (q *coalescer) putAll(ctx context.Context, req *kv.PutAllRequest, opts ...callopt.Option) (*kv.PutAllResponse, error) {
	q.mu.Lock()
	if q.inFlight < q.roundTrips {
		q.inFlight++
		q.mu.Unlock()
		q.metrics.batched(sourceCoalescing, 1)
		resp, err := q.single(ctx, req, opts...)
		q.next()
		return resp, err
	}
	caller := callerOf(ctx)
	if caller == nil {
		caller = ctx
	}
	c := &queuedCall{ctx: caller, req: req, done: make(chan struct{})}
	q.queue = append(q.queue, c)
	q.mu.Unlock()
	select {
	case <-c.done:
		return c.resp, c.err
	case <-caller.Done():
		q.withdraw(c)
		return nil, caller.Err()
	}
}

// next is called as a round trip ends: the calls queued meanwhile go out on a goroutine
// that sends round trips until the queue is empty; with none queued, the round trip is free.
func (q *coalescer) next() {
	q.mu.Lock()
	queued := len(q.queue) > 0
	if !queued {
		q.inFlight--
	}
	q.mu.Unlock()
	if queued {
		go q.drain()
	}
}

// drain sends round trips until the queue is empty. After each it yields once before looking
// at the queue: the callers it just answered are runnable, and a closed-loop caller calls
// again at once; without the yield the queue looks empty, the round trip is freed, and the
// first of them to come back takes it alone while the rest queue behind it, so under load
// every other round trip carried one call (and, on a durable server, an fsync of its own).
func (q *coalescer) drain() {
	for batch := q.take(); batch != nil; batch = q.take() {
		q.send(batch)
		runtime.Gosched()
	}
}

// take removes the next round trip's calls from the queue; with none queued, it frees the
// round trip and returns nil.
func (q *coalescer) take() []*queuedCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size := 0, 0
	for ; n < len(q.queue) && n < maxCoalescedCalls; n++ {
		size += requestBytes(q.queue[n].req)
		if n > 0 && size > maxCoalescedBytes {
			break
		}
	}
	if n == 0 {
		q.inFlight--
		return nil
	}
	batch := make([]*queuedCall, n)
	copy(batch, q.queue)
	left := copy(q.queue, q.queue[n:])
	clear(q.queue[left:])
	q.queue = q.queue[:left]
	return batch
}

// withdraw takes c out of the queue if it is still there.
func (q *coalescer) withdraw(c *queuedCall) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.queue, c); i >= 0 {
		q.queue = slices.Delete(q.queue, i, i+1)
	}
}

// requestBytes approximates the encoded size of a PutAll request.
func requestBytes(req *kv.PutAllRequest) int {
	n := 16 + len(req.GetRequestId())
	for _, e := range req.Entries {
		n += 32 + len(e.GetKey()) + len(e.GetValue())
	}
	return n
}

// send makes one round trip for batch and answers every call in it. A round trip the server
// refuses as a whole (a server configured for fewer calls or smaller requests than this
// client sends) is split: each call is then sent by itself.
func (q *coalescer) send(batch []*queuedCall) {
	ctx, cancel := q.roundTripContext(batch)
	defer cancel()
	ctx, span := q.startRoundTrip(ctx, batch)
	q.metrics.batched(sourceCoalescing, len(batch))
	if len(batch) == 1 {
		c := batch[0]
		c.resp, c.err = q.single(kitexContext(ctx), c.req)
		endRoundTrip(span, c.err)
		close(c.done)
		return
	}
	req := &kv.PutAllManyRequest{Calls: make([]*kv.PutAllRequest, len(batch))}
	for i, c := range batch {
		req.Calls[i] = c.req
	}
	resp, err := q.many(kitexContext(ctx), req)
	endRoundTrip(span, err)
	if err != nil && len(batch) > 1 && refusedWhole(err) {
		for _, c := range batch {
			q.send([]*queuedCall{c})
		}
		return
	}
	for i, c := range batch {
		if c.err = err; err == nil {
			c.resp, c.err = callOutcome(resp, i, len(batch))
		}
		close(c.done)
	}
}

// callOutcome is the i-th call's outcome in resp, the answer to a PutAllMany of calls calls.
func callOutcome(resp *kv.PutAllManyResponse, i, calls int) (*kv.PutAllResponse, error) {
	switch {
	case i >= len(resp.GetOutcomes()):
		return nil, fmt.Errorf("kvclient: PutAllMany answered %d outcomes for %d calls", len(resp.GetOutcomes()), calls)
	case resp.Outcomes[i].GetError() != nil:
		return nil, resp.Outcomes[i].GetError()
	case resp.Outcomes[i].GetResponse() == nil:
		return nil, errors.New("kvclient: PutAllMany answered an outcome with neither a response nor an error")
	}
	return resp.Outcomes[i].GetResponse(), nil
}

// refusedWhole reports whether the server refused a PutAllMany as a whole: for its size, or
// because it predates the method.
func refusedWhole(err error) bool {
	var te *remote.TransError
	return CodeOf(err) == kv.ErrorCode_TOO_LARGE || errors.As(err, &te) && te.TypeID() == remote.UnknownMethod
}

// roundTripContext is the context of a round trip for batch: a trace id of its own, and
// the latest of the calls' deadlines (none if a call has none), bounded by the RPC timeout.
func (q *coalescer) roundTripContext(batch []*queuedCall) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if q.timeout > 0 {
		if bound := time.Now().Add(q.timeout); latest.IsZero() || bound.Before(latest) {
			latest = bound
		}
	}
	ctx := traceid.With(context.Background(), traceid.New())
	if latest.IsZero() {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, latest)
}
