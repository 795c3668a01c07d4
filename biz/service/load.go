package service

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/limiter"
)

// LoadSettings bound the Load streams of a Service.
type LoadSettings struct {
	// MaxStreams is how many Load streams may be open at once; one more is refused with
	// RESOURCE_EXHAUSTED. 0 means DefaultLoadStreams.
	MaxStreams int
	// Idle bounds every wait of a stream: for its next chunk (past it the stream ends with
	// UNAVAILABLE), and for admission of a chunk's entries (past it the entries not admitted
	// are acknowledged RESOURCE_EXHAUSTED). 0 means DefaultLoadIdle.
	Idle time.Duration
}

const (
	// DefaultLoadStreams is LoadSettings.MaxStreams unless set: a few loads at once keep
	// both cores busy; more would only queue for admission.
	DefaultLoadStreams = 8
	// DefaultLoadIdle is LoadSettings.Idle unless set.
	DefaultLoadIdle = 30 * time.Second
)

// loadStreams counts the Load streams open, within LoadSettings.MaxStreams.
type loadStreams struct {
	slots    chan struct{}
	idle     time.Duration
	stop     chan struct{} // closed by StopLoads
	stopOnce sync.Once
}

// StopLoads ends every Load stream after the chunk it is writing (acknowledged, or refused
// UNAVAILABLE if its admission wait is cut) and refuses new ones: the server is shutting
// down, and an open stream would hold its shutdown.
func (s *Service) StopLoads() {
	s.loads.stopOnce.Do(func() { close(s.loads.stop) })
}

func newLoadStreams(l LoadSettings) *loadStreams {
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultLoadStreams
	}
	if l.Idle <= 0 {
		l.Idle = DefaultLoadIdle
	}
	return &loadStreams{slots: make(chan struct{}, l.MaxStreams), idle: l.Idle, stop: make(chan struct{})}
}

// Load serves a streaming bulk load: each chunk read from the stream is written as a
// BEST_EFFORT PutAll of its entries (the same validation, limits, admission in pieces the size
// of the tokens in hand, and engine), and answered with one ack before the next chunk is
// taken. So when admission runs out of tokens the stream stops being read: the client's
// window of unacknowledged chunks fills and it waits, and the server holds no more than the
// chunk it applies and the one read ahead (the transport bounds what it buffers beneath; see
// rpcguard.StreamHandlers). Entries of a chunk that admission keeps out are tried again until
// the stream's idle bound passes, then acknowledged RESOURCE_EXHAUSTED.
func (s *Service) Load(ctx context.Context, stream kv.KVService_LoadServer) error {
	select {
	case <-s.loads.stop:
		return s.loadEnded(ctx)
	case s.loads.slots <- struct{}{}:
	default:
		return kvError(kv.ErrorCode_RESOURCE_EXHAUSTED, "the server has %d Load streams open, the most it takes; retry later", cap(s.loads.slots))
	}
	defer func() { <-s.loads.slots }()
	s.metrics.loadStreams.Inc()
	defer s.metrics.loadStreams.Dec()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the server's shutdown cuts the stream's waits
		select {
		case <-s.loads.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	chunks := make(chan received, 1) // one chunk read ahead while one is applied
	go readChunks(ctx, stream, chunks)
	idle := time.NewTimer(s.loads.idle)
	defer idle.Stop()
	for {
		var r received
		select {
		case r = <-chunks:
		case <-idle.C:
			return kvError(kv.ErrorCode_UNAVAILABLE, "the Load stream sent no chunk for %s; it is closed", s.loads.idle)
		case <-ctx.Done():
			return s.loadEnded(ctx)
		}
		if errors.Is(r.err, io.EOF) {
			return nil
		}
		if r.err != nil {
			return r.err
		}
		ack := s.loadChunk(ctx, r.chunk)
		if err := stream.Send(ctx, ack); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return s.loadEnded(ctx)
		}
		idle.Reset(s.loads.idle)
	}
}

// loadEnded is the error of a stream whose context ended.
func (s *Service) loadEnded(ctx context.Context) error {
	select {
	case <-s.loads.stop:
		return kvError(kv.ErrorCode_UNAVAILABLE, "the server is shutting down; resume the load from the last acknowledged chunk")
	default:
		return kvError(kv.ErrorCode_UNAVAILABLE, "the Load stream ended: %v", ctx.Err())
	}
}

// received is one Recv of a Load stream.
type received struct {
	chunk *kv.LoadChunk
	err   error
}

// readChunks receives the chunks of stream into out until the stream or ctx ends; its last
// item is the error that ended it (io.EOF when the client closed its side).
func readChunks(ctx context.Context, stream kv.KVService_LoadServer, out chan<- received) {
	for {
		c := new(wireChunk)
		err := stream.RecvMsg(ctx, c)
		select {
		case out <- received{chunk: &c.LoadChunk, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// loadChunk writes one chunk as a BEST_EFFORT PutAll and answers it. Entries admission did not
// take in time (RESOURCE_EXHAUSTED with a retry_after) are written again after that wait, as
// long as the stream's idle bound allows.
func (s *Service) loadChunk(ctx context.Context, c *kv.LoadChunk) *kv.LoadAck {
	ack := &kv.LoadAck{Chunk: c.Chunk}
	giveUp := s.now().Add(s.loads.idle)
	entries := c.Entries
	var results []*kv.KeyStatus // set once a response had results
	for done := 0; ; {
		resp, err := s.PutAll(ctx, &kv.PutAllRequest{Entries: entries[done:], Mode: kv.WriteMode_BEST_EFFORT})
		if err != nil && done == 0 {
			ack.Error = asKVError(err)
			return ack
		}
		if err != nil { // a later piece refused whole (the context ended): report it not written
			resp = &kv.PutAllResponse{Results: notAdmitted(entries[done:])}
		}
		ack.Applied += resp.Applied
		if resp.Revision != 0 {
			ack.Revision = resp.Revision
		}
		if results != nil || len(resp.Results) > 0 {
			results = mergeResults(results, entries[:done], ack.Revision, resp, entries[done:])
		}
		ack.RetryAfterMs = resp.RetryAfterMs
		left := firstNotAdmitted(resp.Results)
		if left < 0 || resp.RetryAfterMs == 0 || err != nil {
			break
		}
		wait := time.Duration(resp.RetryAfterMs) * time.Millisecond
		if s.now().Add(wait).After(giveUp) || limiter.Wait(ctx, wait) != nil {
			break
		}
		done += left
		ack.RetryAfterMs = 0
	}
	ack.Results = resultsToSend(results, ack.Revision)
	return ack
}

// mergeResults returns the results of a chunk so far: prev (nil when every entry of head was
// applied at revision: one status each is made), then the tail's from resp (one status each,
// made when resp has none: all applied at resp's revision), the statuses of entries resent
// replacing theirs.
func mergeResults(prev []*kv.KeyStatus, head []*kv.Entry, revision int64, resp *kv.PutAllResponse, tail []*kv.Entry) []*kv.KeyStatus {
	if prev == nil {
		prev = make([]*kv.KeyStatus, 0, len(head)+len(tail))
		for _, e := range head {
			prev = append(prev, &kv.KeyStatus{Key: e.Key, Code: kv.ErrorCode_OK, Version: revision})
		}
	}
	out := prev[:len(head)]
	if len(resp.Results) > 0 {
		return append(out, resp.Results...)
	}
	for _, e := range tail {
		out = append(out, &kv.KeyStatus{Key: e.Key, Code: kv.ErrorCode_OK, Version: resp.Revision})
	}
	return out
}

// firstNotAdmitted is the index of the first entry admission did not take (RESOURCE_EXHAUSTED
// with no version: those are the tail of a BEST_EFFORT write), or -1.
func firstNotAdmitted(results []*kv.KeyStatus) int {
	for i, st := range results {
		if st.Code == kv.ErrorCode_RESOURCE_EXHAUSTED && st.Version == 0 {
			return i
		}
	}
	return -1
}

// notAdmitted reports entries as not written, RESOURCE_EXHAUSTED with no version.
func notAdmitted(entries []*kv.Entry) []*kv.KeyStatus {
	out := make([]*kv.KeyStatus, len(entries))
	for i, e := range entries {
		out[i] = &kv.KeyStatus{Key: e.Key, Code: kv.ErrorCode_RESOURCE_EXHAUSTED}
	}
	return out
}

// asKVError is err as the API's exception (INTERNAL when it is not one).
func asKVError(err error) *kv.KVError {
	if ke, ok := errors.AsType[*kv.KVError](err); ok {
		return ke
	}
	return kvError(kv.ErrorCode_INTERNAL, "%v", err)
}
