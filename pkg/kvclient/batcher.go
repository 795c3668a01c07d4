package kvclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// ErrBatcherClosed is the cause of the error Put returns once Close has been called, for
// errors.Is. (The error itself is an *Error of code UNAVAILABLE, like every Put error.)
var ErrBatcherClosed = errors.New("kvclient: batcher closed")

// Batcher coalesces single-key writes from many goroutines into BEST_EFFORT PutAll calls
// whose size follows what the server's write admission can take, so that many small writers
// get the throughput of batches without sizing them themselves. Create one with
// (*Client).NewBatcher; it is safe for concurrent use. Close it when done: it owns a
// goroutine.
//
// Batching. Put queues its entry. Whatever is queued is sent as soon as fewer than
// WithMaxInFlight round trips are in flight (unless WithLinger asks entries to wait for a
// batch to fill): no key waits for others while a round trip is free, and while every round
// trip is busy the queue grows, so that the next one carries more. A round trip is one PutAll
// of at most the target size, or, when more is queued, a PutAllMany of several such calls
// (at most maxRoundCalls; one call in fallback), of at most the latest suggested_batch entries
// in all (the target size until a response has suggested one). A PutAll never holds a key
// twice (the server refuses such a request whole), so the n-th Put of a key waiting goes in
// the n-th call of the round trip or a later one. Two Puts of one key may then be in flight at
// once and apply in either order, as concurrent writes of a key always may; each caller gets
// the version of its own write.
//
// Sizing. The target size, the most entries of one call, is an AIMD controller (after Netflix's concurrency-limits): +1
// after a call that was answered with no refusal within the target latency
// (WithTargetLatency); ×0.5 after a call with any entry refused RESOURCE_EXHAUSTED, a
// slower call, or a call that got no answer; never above the suggested_batch of the latest
// response (the batch the server's token bucket can take now), nor outside [1, max]
// (WithBatchSize).
//
// Refusals. Entries the server did not admit (RESOURCE_EXHAUSTED with a retry_after, per key
// or for the whole call) were not written: they are queued again, to be sent after the
// response's retry_after. A RESOURCE_EXHAUSTED with no retry_after is the server's memory
// quota (store.max_bytes), which no wait gets past: those callers get it at once. After 3 calls in a row that applied nothing because of refusals, the
// Batcher falls back to one key per call, one call at a time, backing off exponentially
// (never sooner than retry_after) after each refusal, until a response shows tokens again
// (no refusal, and suggested_batch > 1 or absent); the target then grows back by +1 per
// call. Why 3:
// one or two empty answers are what a burst of concurrent batches meeting a just-drained
// bucket produces, and halving already handles them (16 → 8 → 4); three in a row, each from
// a batch sent after the previous refusal came back (refusals of batches that were in flight
// together count once), mean the bucket stayed empty over three round trips while the target
// was cut by 8, and full batches would only be refused again. More would keep sending
// batches into an empty bucket for longer; fewer would mistake one unlucky moment for
// overload.
//
// Errors. Every error Put returns is an *Error. A key's own outcome in the response (e.g.
// TOO_LARGE for its value) goes to its caller only, and so does a refusal the server makes
// of the whole call for one named entry (it validates every entry before writing any, so the
// other entries, not written, are sent again). A request too large as a whole (TOO_LARGE
// with no entry named) is split: its entries are sent again in smaller batches. Any other
// failure of a call (UNAVAILABLE when it got no answer, INTERNAL) fails every entry of that
// batch with it: the Client does not resend a PutAll without a request_id, so entries of a
// call that got no answer may or may not have been written.
//
// Contexts. Put returns when its ctx ends, whatever the state of its entry, with an *Error
// of code UNAVAILABLE that wraps ctx's error: errors.Is(err, context.DeadlineExceeded) (or
// context.Canceled) and errors.Is(err, ErrUnavailable) both hold. An entry whose caller's
// context has ended is never sent afterwards, nor sent again after a refusal; if it was
// already in a call in flight, whether it was written is unknown (the message says so). A
// call carries no deadline of its own beyond the Client's RPC timeout, except that it does
// not outlast the latest deadline of the callers in its batch. Nothing else of ctx (values,
// trace id) reaches the call: a batch serves many callers.
type Batcher struct {
	c   *Client
	opt batcherOptions

	// settleMu serialises the handling of call outcomes together with the observer's calls,
	// so that events arrive in the order the controller took them in.
	settleMu sync.Mutex

	mu       sync.Mutex
	ctrl     aimd
	ready    []*entry  // entries waiting to be sent, oldest first; abandoned ones are dropped lazily
	nReady   int       // the entries of ready still queued
	delayed  []*entry  // refused entries waiting for their retry time
	nextDue  time.Time // the earliest retry time in delayed; zero when there is none
	hold     time.Time // in fallback, no call is sent before it
	inFlight int
	closed   bool
	// suggested is the latest response's suggested_batch (0 before the first): the most
	// entries a round trip carries in all.
	suggested int
	seen      map[string]int // cut's scratch: the calls of the round so far that hold each key

	calls sync.WaitGroup // the goroutines sending calls, observer included

	wake chan struct{} // nudges the loop (capacity 1)
	done chan struct{} // closed when the loop has exited
}

// BatchEvent describes one PutAll call the Batcher sent, once its outcome is known: the
// batch-size metric, and a way for tests to check how the size followed the server.
type BatchEvent struct {
	// Size is the number of entries the call carried.
	Size int
	// Limit is the target size when the batch was cut: Size ≤ Limit, less when the linger ran
	// out first. It is the Target of an earlier event (or the initial target).
	Limit int
	// Suggested is the response's suggested_batch; 0 when the call failed as a whole.
	Suggested int32
	// Target is the target size once this call's outcome was taken into account: the most
	// entries the next batch will carry.
	Target int
	// Refused counts the entries refused RESOURCE_EXHAUSTED (all of them when the call was
	// refused whole); they are queued again, unless their caller has gone or Close was called.
	Refused int
	// Latency is how long the call took.
	Latency time.Duration
	// Fallback reports whether the call was sent in fallback: one key per call.
	Fallback bool
}

// BatcherOption configures a Batcher.
type BatcherOption func(*batcherOptions)

type batcherOptions struct {
	linger        time.Duration
	maxInFlight   int
	initial, max  int
	targetLatency time.Duration
	observer      func(BatchEvent)
}

// WithLinger sets how long the oldest waiting entry may wait for others to join its batch
// before the batch is sent short of the target size (default 0: whatever waits is sent as
// soon as a round trip is free, and batches grow only while every round trip is busy). A
// linger trades each key's latency for fewer, fuller calls.
func WithLinger(d time.Duration) BatcherOption {
	return func(o *batcherOptions) { o.linger = max(d, 0) }
}

// WithMaxInFlight bounds the round trips in flight at once (default one per server the Client
// was made with, at least 1). While
// they are all out, the keys Put meanwhile queue, and the next round trip carries them all:
// one in flight makes the fewest, fullest round trips, which costs least CPU per key on both
// sides (on two cores shared by client and server it gave the most keys/s at 50 and 500
// callers: docs/sdk.md); more keep a server of many cores, or a long network path, busier.
// In fallback, one call is in flight at a time.
func WithMaxInFlight(n int) BatcherOption {
	return func(o *batcherOptions) { o.maxInFlight = max(n, 1) }
}

// WithBatchSize sets the target size the Batcher starts from, initial (default 16), and the
// largest it may reach, ceiling (default 1000, the server's default limits.max_batch_entries).
// Both are at least 1; initial is capped by ceiling.
func WithBatchSize(initial, ceiling int) BatcherOption {
	return func(o *batcherOptions) { o.initial, o.max = initial, ceiling }
}

// WithTargetLatency sets the call latency above which a call counts as slow and halves the
// target size (default 5ms): batches grow only while the server answers them quickly. 0
// turns the rule off.
func WithTargetLatency(d time.Duration) BatcherOption {
	return func(o *batcherOptions) { o.targetLatency = max(d, 0) }
}

// WithBatchObserver has f called once after every PutAll call the Batcher sends, with what
// was sent and how the target size moved (for metrics, and for tests). Calls of f are
// serialised, in the order the outcomes were taken into account, and hold up the handling of
// further outcomes while they run: f must be quick and must not call Put.
func WithBatchObserver(f func(BatchEvent)) BatcherOption {
	return func(o *batcherOptions) { o.observer = f }
}

// NewBatcher returns a Batcher that sends its batches through c. It does not own c: close
// the Batcher before c.
func (c *Client) NewBatcher(opts ...BatcherOption) *Batcher {
	o := batcherOptions{
		maxInFlight:   c.servers,
		initial:       16,
		max:           1000,
		targetLatency: 5 * time.Millisecond,
	}
	for _, opt := range opts {
		opt(&o)
	}
	b := &Batcher{
		c:    c,
		opt:  o,
		ctrl: newAIMD(o.initial, o.max, o.targetLatency),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go b.loop()
	return b
}

// Put writes value under key (unconditionally, without TTL) in the next batch, and returns
// the key's new version once the batch is answered. value must not change until Put returns.
// See Batcher for how refusals are retried and how ctx is honoured; give ctx a deadline: a
// key the server keeps refusing is retried for as long as ctx lasts (or until Close).
func (b *Batcher) Put(ctx context.Context, key string, value []byte) (version int64, err error) {
	e, perr := b.submit(ctx, key, value)
	if perr != nil {
		return 0, perr
	}
	return b.wait(e)
}

// entries recycles the entries of Puts that have taken their result (with their result
// channel), so that a Put allocates nothing of its own in the steady state.
var entries = sync.Pool{New: func() any { return &entry{res: make(chan result, 1)} }}

// recycle returns e, whose result its Put has taken, to entries: nothing in the Batcher
// refers to a finished entry any more.
func recycle(e *entry) {
	*e = entry{res: e.res}
	entries.Put(e)
}

// Close sends the entries not sent yet, waits for every call in flight, and stops the
// Batcher. Entries waiting to be retried after a refusal are not retried: their Put returns
// that RESOURCE_EXHAUSTED error (with its RetryAfter), as does any entry refused from now on.
// Put after Close returns an error matching ErrBatcherClosed. Close always returns nil; it
// may be called more than once.
func (b *Batcher) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for _, e := range b.delayed {
			b.finish(e, 0, e.refusal)
		}
		b.delayed, b.nextDue = nil, time.Time{}
	}
	b.mu.Unlock()
	b.nudge()
	<-b.done
	return nil
}

// entryState is where an entry is in its life.
type entryState uint8

const (
	queued    entryState = iota // in ready, waiting to be cut into a batch
	delayed                     // refused, in delayed until its retry time
	sending                     // in a call in flight
	finished                    // its result was delivered
	abandoned                   // its caller's context ended: never sent (again), no result
)

// entry is one Put on its way.
type entry struct {
	ctx   context.Context // the caller's: once it ends, the entry is not sent
	key   string
	value []byte
	res   chan result // buffered: receives the one result

	// Guarded by Batcher.mu.
	state   entryState
	since   time.Time // queued: when it became ready (its linger counts from then); delayed: when it is due
	refusal *Error    // delayed: the refusal it waits out, its result if Close ends the wait
}

type result struct {
	version int64
	err     *Error
}

// batch is one PutAll call's worth of entries.
type batch struct {
	entries  []*entry
	limit    int    // the target size its round trip was cut to
	epoch    uint64 // the controller's epoch when it was cut
	fallback bool   // cut in fallback
	last     bool   // the last call of its round trip: settling it frees the round trip's slot
}

// round is one round trip's calls: one PutAll, or a PutAllMany of several when keys repeat.
type round struct {
	calls    []*batch
	deadline time.Time // the latest of its callers' deadlines; zero if one has none
}

// maxRoundCalls bounds the calls of one round trip, and so how many Puts of one key it carries.
const maxRoundCalls = 16

// GetKey returns the entry's key (see Statuses).
func (e *entry) GetKey() string { return e.key }

// submit queues a Put's entry.
func (b *Batcher) submit(ctx context.Context, key string, value []byte) (*entry, *Error) {
	if err := ctx.Err(); err != nil {
		return nil, contextEnded(err, false)
	}
	e := entries.Get().(*entry)
	e.ctx, e.key, e.value = ctx, key, value
	var now time.Time
	if b.opt.linger > 0 {
		now = time.Now() // the linger counts from here
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		recycle(e)
		return nil, &Error{Code: kv.ErrorCode_UNAVAILABLE, Message: "Put: the batcher is closed", cause: ErrBatcherClosed}
	}
	e.state, e.since = queued, now
	b.ready = append(b.ready, e)
	b.nReady++
	free := b.inFlight < b.slots()
	b.mu.Unlock()
	if free { // else the round trip that ends next takes it
		b.nudge()
	}
	return e, nil
}

// wait returns e's result, or an error as soon as e's context ends.
func (b *Batcher) wait(e *entry) (int64, error) {
	var r result
	select {
	case r = <-e.res:
	case <-e.ctx.Done():
		var err *Error
		if r, err = b.abandon(e); err != nil {
			return 0, err // e stays where it is in the Batcher, abandoned: not recycled
		}
	}
	recycle(e)
	if r.err != nil {
		return 0, r.err
	}
	return r.version, nil
}

// abandon gives up on e, whose caller's context has ended, unless its result is in already.
func (b *Batcher) abandon(e *entry) (result, *Error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e.state {
	case finished: // delivered under mu, so it is there to take
		return <-e.res, nil
	case queued:
		b.nReady--
	}
	sent := e.state == sending
	e.state = abandoned // a delayed entry is dropped from delayed when it falls due
	return result{}, contextEnded(e.ctx.Err(), sent)
}

// contextEnded is Put's error when its context ended with err; sent tells whether the entry
// was in a call in flight by then.
func contextEnded(err error, sent bool) *Error {
	msg := "Put: the context ended before the key was sent; it was not written"
	if sent {
		msg = "Put: the context ended while the key's batch was in flight; it may or may not have been written"
	}
	return &Error{Code: kv.ErrorCode_UNAVAILABLE, Message: msg + ": " + err.Error(), cause: err}
}

// nudge wakes the loop to look at the queue again.
func (b *Batcher) nudge() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// loop sends batches as they become due until the Batcher is closed and drained.
func (b *Batcher) loop() {
	defer close(b.done)
	defer b.calls.Wait()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		b.mu.Lock()
		wait, exit := b.dispatch(time.Now())
		b.mu.Unlock()
		if exit {
			return
		}
		var timeout <-chan time.Time
		if wait > 0 {
			t.Reset(wait)
			timeout = t.C
		}
		select {
		case <-b.wake:
		case <-timeout:
		}
	}
}

// dispatch sends every batch that is due at now, and returns how long until something else
// falls due (0 if nothing will without a nudge), or exit when the Batcher is closed and
// has nothing left to do.
func (b *Batcher) dispatch(now time.Time) (wait time.Duration, exit bool) {
	var next time.Time
	for {
		rd, at := b.take(now)
		if len(rd.calls) == 0 {
			next = at
			break
		}
		b.calls.Go(func() { b.run(rd) })
	}
	if !b.nextDue.IsZero() && (next.IsZero() || b.nextDue.Before(next)) {
		next = b.nextDue
	}
	if next.IsZero() {
		return 0, b.closed && b.nReady == 0 && b.inFlight == 0
	}
	return max(next.Sub(now), time.Nanosecond), false
}

// take cuts the next round trip when one may go at now, counting it in flight. Otherwise it
// returns a round of no calls and when one may go (zero: not before something changes).
func (b *Batcher) take(now time.Time) (round, time.Time) {
	b.promote(now)
	for b.nReady > 0 && b.inFlight < b.slots() {
		b.dropAbandonedHead()
		if at := b.sendAt(); now.Before(at) {
			return round{}, at
		}
		if rd := b.cut(); len(rd.calls) > 0 {
			b.inFlight++
			return rd, time.Time{}
		}
	}
	return round{}, time.Time{}
}

// run makes rd's round trip and then, on the same goroutine, the next ones while entries
// are queued as it ends (so a busy Batcher hands no work to its loop). When it stops, the
// loop is nudged to look at what is left: a linger, a retry time, Close.
func (b *Batcher) run(rd round) {
	for len(rd.calls) > 0 {
		b.send(rd)
		b.mu.Lock()
		rd, _ = b.take(time.Now())
		b.mu.Unlock()
	}
	b.nudge()
}

// slots is how many calls may be in flight at once.
func (b *Batcher) slots() int {
	if b.ctrl.inFallback() {
		return 1
	}
	return b.opt.maxInFlight
}

// dropAbandonedHead drops the entries at the front of ready that are no longer queued (their
// callers gave up), so that ready[0] is the oldest queued entry. There must be one (nReady > 0).
func (b *Batcher) dropAbandonedHead() {
	for b.ready[0].state != queued {
		b.ready[0], b.ready = nil, b.ready[1:]
	}
}

// sendAt is when the next batch may be sent (at once if zero): not before the hold in
// fallback, and, until the target size is reached, not before the oldest entry, ready[0]
// (see dropAbandonedHead), has lingered. Closing sends at once.
func (b *Batcher) sendAt() time.Time {
	var at time.Time
	if b.closed {
		return at
	}
	if b.ctrl.inFallback() {
		at = b.hold
	}
	if b.nReady < b.ctrl.size() {
		if lingered := b.ready[0].since.Add(b.opt.linger); lingered.After(at) {
			at = lingered
		}
	}
	return at
}

// cut takes the next round trip from ready: the oldest queued entries, in calls of at most the
// target size that each name a key once (an entry goes in the first call with room after the
// last that holds its key), at most maxRoundCalls calls (one in fallback) and at most
// roundEntries entries in all. Entries whose caller's context has ended are dropped instead.
func (b *Batcher) cut() round {
	limit, epoch, fallback := b.ctrl.size(), b.ctrl.epoch(), b.ctrl.inFallback()
	maxCalls, total := maxRoundCalls, b.roundEntries()
	if fallback {
		maxCalls = 1
	}
	if b.seen == nil {
		b.seen = make(map[string]int)
	}
	var rd round
	taken, open := 0, 0 // open: the first call with room
	keep := b.ready[:0]
	for i, e := range b.ready {
		if taken == total || open == maxCalls {
			keep = append(keep, b.ready[i:]...)
			break
		}
		switch {
		case e.state != queued: // abandoned by its caller
			continue
		case e.ctx.Err() != nil:
			e.state = abandoned
			b.nReady--
			continue
		}
		c := max(b.seen[e.key], open)
		for c < len(rd.calls) && len(rd.calls[c].entries) == limit {
			c++
		}
		if c == maxCalls { // the key is in every call the round may have: next round
			keep = append(keep, e)
			continue
		}
		if c == len(rd.calls) {
			rd.calls = append(rd.calls, &batch{limit: limit, epoch: epoch, fallback: fallback})
		}
		b.seen[e.key] = c + 1
		e.state = sending
		b.nReady--
		rd.calls[c].entries = append(rd.calls[c].entries, e)
		taken++
		for open < len(rd.calls) && len(rd.calls[open].entries) == limit {
			open++
		}
	}
	clear(b.seen)
	clear(b.ready[len(keep):])
	b.ready = keep
	if len(rd.calls) > 0 {
		rd.calls[len(rd.calls)-1].last = true
	}
	for _, bt := range rd.calls {
		if d := latestDeadline(bt.entries); d.IsZero() {
			rd.deadline = time.Time{}
			break
		} else if d.After(rd.deadline) {
			rd.deadline = d
		}
	}
	return rd
}

// roundEntries is the most entries a round trip may carry in all: what the server said it
// can take now (the latest suggested_batch), or, before it has said, or in fallback, the
// target size.
func (b *Batcher) roundEntries() int {
	if b.suggested > 0 && !b.ctrl.inFallback() {
		return max(b.suggested, b.ctrl.size())
	}
	return b.ctrl.size()
}

// latestDeadline is the latest of the entries' deadlines, or zero if one of them has none: a
// call need not outlast every caller waiting for it.
func latestDeadline(es []*entry) time.Time {
	var latest time.Time
	for _, e := range es {
		d, ok := e.ctx.Deadline()
		if !ok {
			return time.Time{}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest
}

// send makes rd's round trip, a PutAll or a PutAllMany, and settles each call's outcome. A
// PutAllMany the server refuses as a whole (a server that predates it, or one configured for
// smaller requests) is sent again as one PutAll after the other.
func (b *Batcher) send(rd round) {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !rd.deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, rd.deadline)
	}
	defer cancel()
	if len(rd.calls) == 1 {
		b.sendOne(ctx, rd.calls[0])
		return
	}
	req := &kv.PutAllManyRequest{Calls: make([]*kv.PutAllRequest, len(rd.calls))}
	for i, bt := range rd.calls {
		req.Calls[i] = bt.request()
		b.c.metrics.batched(sourceBatcher, len(bt.entries))
	}
	start := time.Now()
	resp, err := b.c.PutAllMany(ctx, req)
	latency := time.Since(start)
	if err != nil && refusedWhole(err) {
		for _, bt := range rd.calls {
			b.sendOne(ctx, bt)
		}
		return
	}
	for i, bt := range rd.calls {
		var one *kv.PutAllResponse
		oneErr := err
		if err == nil {
			one, oneErr = callOutcome(resp, i, len(rd.calls))
		}
		b.settle(bt, one, oneErr, latency)
	}
}

// sendOne makes bt's PutAll call and settles its outcome.
func (b *Batcher) sendOne(ctx context.Context, bt *batch) {
	b.c.metrics.batched(sourceBatcher, len(bt.entries))
	start := time.Now()
	resp, err := b.c.PutAll(ctx, bt.request())
	b.settle(bt, resp, err, time.Since(start))
}

// request is bt's PutAll request.
func (bt *batch) request() *kv.PutAllRequest {
	req := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: make([]*kv.Entry, len(bt.entries))}
	backing := make([]kv.Entry, len(bt.entries)) // one allocation for every entry
	for i, e := range bt.entries {
		backing[i] = kv.Entry{Key: e.key, Value: e.value}
		req.Entries[i] = &backing[i]
	}
	return req
}

// settle hands out the results of bt's call, queues again what is to be sent again, updates
// the target size, and reports the call to the observer.
func (b *Batcher) settle(bt *batch, resp *kv.PutAllResponse, err error, latency time.Duration) {
	b.settleMu.Lock()
	defer b.settleMu.Unlock()
	ev := BatchEvent{Size: len(bt.entries), Limit: bt.limit, Latency: latency, Fallback: bt.fallback}
	b.mu.Lock()
	if bt.last {
		b.inFlight--
	}
	now := time.Now()
	var results []*kv.KeyStatus
	if err == nil {
		results, err = Statuses(bt.entries, resp.Results, resp.Revision)
	}
	if err != nil {
		ev.Refused = b.settleFailure(bt, toError("PutAll", err), now)
	} else {
		ev.Suggested = resp.GetSuggestedBatch()
		if ev.Suggested > 0 {
			b.suggested = int(ev.Suggested)
		}
		ev.Refused = b.settleResponse(bt, resp, results, latency, now)
	}
	ev.Target = b.ctrl.size()
	b.mu.Unlock()
	if b.opt.observer != nil {
		b.opt.observer(ev)
	}
}

// settleResponse settles an answered call: each entry gets its own result (one per entry, see
// Statuses), refused entries are queued for a retry. It returns how many were refused.
func (b *Batcher) settleResponse(bt *batch, resp *kv.PutAllResponse, results []*kv.KeyStatus, latency time.Duration, now time.Time) int {
	var refused []*entry
	applied := 0
	for i, e := range bt.entries {
		switch r := results[i]; r.Code {
		case kv.ErrorCode_OK:
			applied++
			b.finish(e, r.Version, nil)
		case kv.ErrorCode_RESOURCE_EXHAUSTED:
			refused = append(refused, e)
		default:
			b.finish(e, 0, &Error{Code: r.Code, Failed: []*kv.KeyStatus{r},
				Message: fmt.Sprintf("key %q was not written: %s (current version %d)", r.Key, r.Code, r.Version)})
		}
	}
	if len(refused) == 0 {
		b.ctrl.onSuccess(latency, resp.SuggestedBatch)
		return 0
	}
	if resp.RetryAfterMs == 0 {
		// Refused by the server's memory quota, not by admission: no wait will let them in.
		b.ctrl.onSuccess(latency, resp.SuggestedBatch)
		for _, e := range refused {
			b.finish(e, 0, &Error{Code: kv.ErrorCode_RESOURCE_EXHAUSTED,
				Message: fmt.Sprintf("key %q was not written: the server's store is full (store.max_bytes)", e.key)})
		}
		return 0
	}
	b.ctrl.onRefused(resp.SuggestedBatch, applied, bt.epoch)
	retryAfter := time.Duration(resp.RetryAfterMs) * time.Millisecond
	b.refuse(refused, &Error{Code: kv.ErrorCode_RESOURCE_EXHAUSTED, RetryAfter: retryAfter,
		Message: fmt.Sprintf("the server's write admission did not admit the key in time; retry after %v", retryAfter)}, now)
	return len(refused)
}

// settleFailure settles a call that failed as a whole with e, and returns how many entries
// were refused RESOURCE_EXHAUSTED.
func (b *Batcher) settleFailure(bt *batch, e *Error, now time.Time) int {
	switch {
	case e.Code == kv.ErrorCode_RESOURCE_EXHAUSTED && e.RetryAfter > 0: // admission; with no
		// retry-after it is the memory quota, which no wait gets past: failed below.
		b.ctrl.onRefused(0, 0, bt.epoch)
		b.refuse(bt.entries, e, now)
		return len(bt.entries)
	case b.failNamed(bt, e, now):
	case e.Code == kv.ErrorCode_TOO_LARGE && len(bt.entries) > 1:
		// Over a bound of the whole request (entries or bytes), refused before anything was
		// written: send the entries again, in the smaller batches the halved target makes.
		b.ctrl.onDropped()
		b.enqueue(bt.entries, now, true)
	default:
		b.ctrl.onDropped()
		for _, en := range bt.entries {
			b.finish(en, 0, e)
		}
	}
	return 0
}

// failNamed handles a call the server refused whole because of the entries e names (it
// validates every entry before writing any): those callers get e, the other entries are sent
// again. It reports false, doing nothing, when e names no entry of bt.
func (b *Batcher) failNamed(bt *batch, e *Error, now time.Time) bool {
	named := make(map[string]*kv.KeyStatus, len(e.Failed))
	for _, s := range e.Failed {
		named[s.GetKey()] = s
	}
	var rest []*entry
	for _, en := range bt.entries {
		if _, ok := named[en.key]; !ok {
			rest = append(rest, en)
		}
	}
	if len(rest) == len(bt.entries) {
		return false
	}
	for _, en := range bt.entries {
		if s, ok := named[en.key]; ok {
			b.finish(en, 0, &Error{Code: s.Code, Message: e.Message, Failed: []*kv.KeyStatus{s}, cause: e.cause})
		}
	}
	b.enqueue(rest, now, true)
	return true
}

// refuse queues refused entries for a retry once refusal's RetryAfter has passed (at least a
// millisecond), or, after Close, fails them with it. In fallback it also holds every call
// back: exponentially longer after each refusal in a row, never less than RetryAfter.
func (b *Batcher) refuse(es []*entry, refusal *Error, now time.Time) {
	due := now.Add(max(refusal.RetryAfter, time.Millisecond))
	for _, e := range es {
		switch {
		case e.state == abandoned:
		case b.closed:
			b.finish(e, 0, refusal)
		default:
			e.state, e.since, e.refusal = delayed, due, refusal
			b.delayed = append(b.delayed, e)
			if b.nextDue.IsZero() || due.Before(b.nextDue) {
				b.nextDue = due
			}
		}
	}
	if b.ctrl.inFallback() {
		b.hold = now.Add(backoff(b.ctrl.backoffAttempt(), refusal.RetryAfter))
	}
}

// promote moves the delayed entries due at now to the front of ready, and drops the
// abandoned ones.
func (b *Batcher) promote(now time.Time) {
	if b.nextDue.IsZero() || now.Before(b.nextDue) {
		return
	}
	var due []*entry
	keep := b.delayed[:0]
	b.nextDue = time.Time{}
	for _, e := range b.delayed {
		switch {
		case e.state != delayed:
		case !now.Before(e.since):
			due = append(due, e)
		default:
			keep = append(keep, e)
			if b.nextDue.IsZero() || e.since.Before(b.nextDue) {
				b.nextDue = e.since
			}
		}
	}
	clear(b.delayed[len(keep):])
	b.delayed = keep
	b.enqueue(due, now, true)
}

// enqueue puts entries in line to be sent: at the back, or at the front for entries that
// have been in line before, so they go in the next batch. Abandoned entries are left out.
func (b *Batcher) enqueue(es []*entry, now time.Time, front bool) {
	es = slices.DeleteFunc(slices.Clone(es), func(e *entry) bool { return e.state == abandoned })
	for _, e := range es {
		e.state, e.since, e.refusal = queued, now, nil
	}
	b.nReady += len(es)
	if front {
		b.ready = append(es, b.ready...)
	} else {
		b.ready = append(b.ready, es...)
	}
}

// finish delivers e's result, unless its caller has gone.
func (b *Batcher) finish(e *entry, version int64, err *Error) {
	if e.state == abandoned {
		return
	}
	e.state = finished
	e.res <- result{version: version, err: err}
}
