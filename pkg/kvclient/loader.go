package kvclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/kerrors"
	"github.com/cloudwego/kitex/pkg/remote/trans/ttstream"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
)

// LoadAck is the server's acknowledgement of one chunk a Loader sent.
type LoadAck struct {
	// Chunk is the number the chunk was sent with.
	Chunk int64
	// Revision is the revision of the chunk's last applied piece (0 when nothing applied).
	Revision int64
	// Applied counts the chunk's keys written.
	Applied int
	// Results is one status per entry, in the chunk's order; empty when every entry was
	// written at Revision. An entry the server's admission kept out for longer than its idle
	// bound is RESOURCE_EXHAUSTED with version 0: resend it after RetryAfter.
	Results    []*kv.KeyStatus
	RetryAfter time.Duration
	// Err is set when the chunk was refused as a whole (nothing of it written): the code a
	// PutAll of its entries would have failed with (INVALID_ARGUMENT, TOO_LARGE, ...).
	Err *Error
}

// LoadError is the failure of a Loader's stream: Err says why, and Unacked lists, in the order
// they were sent, the chunks sent but not acknowledged. Each of those may or may not have been
// written: resend them (a key written twice is written again, at a new version). Every chunk
// acknowledged before was written as its LoadAck says.
type LoadError struct {
	Err     *Error
	Unacked []int64
}

// Error describes the failure and the chunks it left unacknowledged.
func (e *LoadError) Error() string {
	return fmt.Sprintf("kvclient: load stream failed with %d chunks unacknowledged %v: %v", len(e.Unacked), e.Unacked, e.Err)
}

// Unwrap returns Err, so errors.Is(err, ErrUnavailable) and CodeOf work.
func (e *LoadError) Unwrap() error { return e.Err }

// LoaderOption configures a Loader.
type LoaderOption func(*loaderOptions)

type loaderOptions struct {
	window     int
	ackTimeout time.Duration
	onAck      func(LoadAck)
}

// DefaultLoadWindow is how many chunks a Loader has in flight unless WithLoadWindow says
// otherwise: enough to keep the server applying one chunk while the next ones travel.
const DefaultLoadWindow = 8

// WithLoadWindow sets how many chunks may be sent and not yet acknowledged (default
// DefaultLoadWindow); Send waits while that many are.
func WithLoadWindow(n int) LoaderOption {
	return func(o *loaderOptions) { o.window = n }
}

// WithLoadAckTimeout bounds how long a Loader waits for the next acknowledgement while chunks
// are in flight (default 1m, past the server's own idle bound); past it the stream fails with
// UNAVAILABLE.
func WithLoadAckTimeout(d time.Duration) LoaderOption {
	return func(o *loaderOptions) { o.ackTimeout = d }
}

// WithLoadAcks makes the Loader call f with each acknowledgement, in the order the chunks were
// sent, from the Loader's receiving goroutine (f should be quick: the next ack waits for it).
// This is where a caller checkpoints: every chunk up to an acknowledged one is written.
func WithLoadAcks(f func(LoadAck)) LoaderOption {
	return func(o *loaderOptions) { o.onAck = f }
}

// Loader is one streaming bulk load (the Load method): chunks of entries sent one after
// another without waiting for each answer, at most a window of them unacknowledged, each
// written by the server as a BEST_EFFORT PutAll would write it and acknowledged in order with
// its revision. It is faster than a loop of PutAll calls because neither side waits for the
// other between chunks. Send and Close are for one goroutine; the acks arrive on another.
//
// A Loader runs over one TTHeader-streaming connection of its own (plain TCP: a Client made
// WithTLS cannot load).
type Loader struct {
	stream     kvservice.KVService_LoadClient
	cancel     context.CancelFunc
	window     chan struct{}
	ackTimeout time.Duration
	onAck      func(LoadAck)
	recvDone   chan struct{}
	closed     bool

	mu      sync.Mutex
	pending []int64 // sent, not acknowledged, oldest first
	err     *LoadError
	timer   *time.Timer // armed while chunks are pending, or the stream's end awaited
	closing bool        // Close was called
	ended   bool        // the receiver has returned
}

// NewLoader opens a Load stream to one of the servers. The stream lives until Close, a
// failure, or the end of ctx (which fails it).
func (c *Client) NewLoader(ctx context.Context, opts ...LoaderOption) (*Loader, error) {
	o := loaderOptions{window: DefaultLoadWindow, ackTimeout: time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.window <= 0 || o.ackTimeout <= 0 {
		return nil, fmt.Errorf("kvclient: the load window and ack timeout must be positive, got %d and %s", o.window, o.ackTimeout)
	}
	if c.tls {
		return nil, &Error{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: "Load streams do not run over TLS; load through a plain-TCP client"}
	}
	ctx, span := c.startSpan(ctx, "Load")
	span.End() // the span marks the stream's opening; its chunks are not calls
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.raw.Load(ctx)
	if err != nil {
		cancel()
		return nil, streamError(err)
	}
	l := &Loader{stream: stream, cancel: cancel, window: make(chan struct{}, o.window), ackTimeout: o.ackTimeout,
		onAck: o.onAck, recvDone: make(chan struct{})}
	go l.receive(ctx)
	return l, nil
}

// Send sends chunk (its number, chosen by the caller and repeated in its ack) with entries,
// waiting while the window is full. It fails with the stream's *LoadError once the stream
// has failed, or with ctx's error (the chunk then was not sent).
func (l *Loader) Send(ctx context.Context, chunk int64, entries []*kv.Entry) error {
	if l.closed {
		return errors.New("kvclient: Send on a closed Loader")
	}
	select {
	case l.window <- struct{}{}:
	case <-l.recvDone:
		return l.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	l.pending = append(l.pending, chunk)
	l.armLocked()
	l.mu.Unlock()
	if err := l.stream.Send(ctx, &kv.LoadChunk{Chunk: chunk, Entries: entries}); err != nil {
		return l.fail(streamError(err))
	}
	return nil
}

// Close says no more chunks will come, waits for the acknowledgement of every chunk sent, and
// ends the stream. It returns nil when every chunk was acknowledged, else the *LoadError.
func (l *Loader) Close() error {
	if !l.closed {
		l.closed = true
		l.mu.Lock()
		l.closing = true // from now on the ack timer also bounds the wait for the stream's end
		l.armLocked()
		l.mu.Unlock()
		if err := l.stream.CloseSend(context.Background()); err != nil {
			_ = l.fail(streamError(err))
		}
	}
	<-l.recvDone // bounded: the ack timer fails the stream, which ends the receiver
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return nil
}

// Done is closed once the stream has ended: failed (Close then returns why), or closed by
// Close with every chunk acknowledged. A caller waiting for an ack selects on it too.
func (l *Loader) Done() <-chan struct{} { return l.recvDone }

// Unacked returns the chunks sent and not yet acknowledged, oldest first.
func (l *Loader) Unacked() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.pending...)
}

// receive reads the acks until the stream ends.
func (l *Loader) receive(ctx context.Context) {
	defer close(l.recvDone)
	defer func() { // the stream is over: nothing more to time
		l.mu.Lock()
		l.ended = true
		if l.timer != nil {
			l.timer.Stop()
		}
		l.mu.Unlock()
	}()
	for {
		a, err := l.stream.Recv(ctx)
		if errors.Is(err, io.EOF) {
			if n := len(l.Unacked()); n > 0 {
				_ = l.fail(&Error{Code: kv.ErrorCode_UNAVAILABLE, Message: fmt.Sprintf("the server ended the stream with %d chunks unacknowledged", n)})
			}
			return
		}
		if err != nil {
			_ = l.fail(streamError(err))
			return
		}
		if err := l.acked(a); err != nil {
			_ = l.fail(err)
			return
		}
	}
}

// acked takes ack a off the pending chunks and hands it to the caller.
func (l *Loader) acked(a *kv.LoadAck) *Error {
	l.mu.Lock()
	if len(l.pending) == 0 || l.pending[0] != a.Chunk {
		l.mu.Unlock()
		return &Error{Code: kv.ErrorCode_INTERNAL, Message: fmt.Sprintf("the server acknowledged chunk %d out of order", a.Chunk)}
	}
	l.pending = l.pending[1:]
	l.armLocked()
	l.mu.Unlock()
	<-l.window
	if l.onAck != nil {
		ack := LoadAck{Chunk: a.Chunk, Revision: a.Revision, Applied: int(a.Applied), Results: a.Results,
			RetryAfter: time.Duration(a.RetryAfterMs) * time.Millisecond}
		if a.Error != nil {
			ack.Err = toError("Load", a.Error)
		}
		l.onAck(ack)
	}
	return nil
}

// armLocked runs the ack timer while chunks are pending or Close waits for the stream's end,
// restarting it; l.mu is held.
func (l *Loader) armLocked() {
	if l.ended {
		return
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(l.ackTimeout, func() {
			_ = l.fail(&Error{Code: kv.ErrorCode_UNAVAILABLE, Message: fmt.Sprintf("no answer from the server for %s", l.ackTimeout)})
		})
	}
	if len(l.pending) > 0 || l.closing {
		l.timer.Reset(l.ackTimeout)
	} else {
		l.timer.Stop()
	}
}

// fail records the stream's first failure and ends the stream.
func (l *Loader) fail(e *Error) error {
	l.mu.Lock()
	if l.err == nil {
		l.err = &LoadError{Err: e, Unacked: append([]int64(nil), l.pending...)}
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	err := l.err
	l.mu.Unlock()
	l.cancel()
	return err
}

func (l *Loader) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return &LoadError{Err: &Error{Code: kv.ErrorCode_UNAVAILABLE, Message: "the stream ended"}}
}

// streamError is a stream's failure as an *Error: the code a server sent as the stream's
// business status (see handler.StreamError), else what toError makes of it.
func streamError(err error) *Error {
	if be, ok := kerrors.FromBizStatusError(err); ok {
		e := &Error{Code: kv.ErrorCode(be.BizStatusCode()), Message: be.BizMessage(), cause: err}
		if ms, err := strconv.ParseInt(be.BizExtra()["retry_after_ms"], 10, 64); err == nil {
			e.RetryAfter = time.Duration(ms) * time.Millisecond
		}
		return e
	}
	return toError("Load", err)
}

// CanLoad reports whether NewLoader can open a stream on this Client: Load streams run over
// plain TCP, so not on a Client made WithTLS.
func (c *Client) CanLoad() bool { return !c.tls }

// Load is not served by a Client (it implements kv.KVService for the unary methods): a
// streaming load from a client is NewLoader.
func (c *Client) Load(context.Context, kv.KVService_LoadServer) error {
	return &Error{Code: kv.ErrorCode_INVALID_ARGUMENT, Message: "a Client does not serve Load streams; use NewLoader"}
}

// streamOptions are the Kitex options of the Load streams: a connection of its own per
// stream, closed when the stream ends, so nothing outlives the Loader.
func streamOptions() []client.Option {
	return []client.Option{client.WithTTHeaderStreamingOptions(
		client.WithTTHeaderStreamingTransportOptions(ttstream.WithClientShortConnPool()))}
}
