package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// chunkWriter writes one chunk of entries into putallkv for load, import and migrate: every
// entry applied (each with its own precondition), or an error naming the keys that were not.
// It is the one place those commands write through, so that the transport can change in this
// file alone.
type chunkWriter interface {
	// WriteChunk applies entries and returns the revision of the last write it made (0 when
	// it wrote nothing). A *chunkError lists the entries refused for good (a failed
	// precondition, a value too large); entries admission refused are sent again, never
	// dropped, until ctx ends.
	WriteChunk(ctx context.Context, entries []*kv.Entry) (revision int64, err error)
	// Close ends the writer's stream, if it has one.
	Close() error
}

// newChunkWriter returns the chunkWriter the commands use, counting its retries in st: the
// Load stream when api is an SDK client that can stream (plain TCP), else PutAll calls.
func newChunkWriter(api kv.KVService, st *moveStats) chunkWriter {
	if c, ok := api.(*kvclient.Client); ok && c.CanLoad() {
		return &refusalRetrier{transport: &loadTransport{client: c}, stats: st}
	}
	return &refusalRetrier{transport: putAllTransport{api: api}, stats: st}
}

// chunkError is a chunk some of whose entries were refused for good.
type chunkError struct {
	// Failed are the refused keys with their code and current version, in the chunk's order.
	Failed []*kv.KeyStatus
}

func (e *chunkError) Error() string {
	s := e.Failed[0]
	return fmt.Sprintf("%d keys of the chunk refused (first: %q %s, version %d)", len(e.Failed), s.Key, s.Code, s.Version)
}

// transport writes entries once, as one BEST_EFFORT batch.
type transport interface {
	// write returns one status per entry and the batch's revision, or a *kvclient.Error for a
	// batch refused as a whole; retryAfter is the wait the server asked for before entries it
	// refused RESOURCE_EXHAUSTED are sent again.
	write(ctx context.Context, entries []*kv.Entry) (statuses []*kv.KeyStatus, revision int64, retryAfter time.Duration, err error)
	close() error
}

// refusalRetrier is the chunkWriter over a transport: an entry refused RESOURCE_EXHAUSTED
// (admission: its tokens did not come in time), or a whole batch so refused, is resent, alone
// with the others refused, after the retry_after_ms the server asked for (and a backoff that
// grows while refusals continue); any other refusal is final and reported.
type refusalRetrier struct {
	transport transport
	stats     *moveStats
}

// maxRefusalWait bounds the wait between two attempts at refused entries; the first waits
// the server's retry_after (at least a millisecond), each later one about twice the last.
const maxRefusalWait = 5 * time.Second

func (w *refusalRetrier) WriteChunk(ctx context.Context, entries []*kv.Entry) (int64, error) {
	var rev int64
	var failed []*kv.KeyStatus
	for attempt := 0; len(entries) > 0; attempt++ {
		statuses, r, wait, err := w.transport.write(ctx, entries)
		var again []*kv.Entry
		if err != nil {
			var e *kvclient.Error
			if !errors.As(err, &e) || e.Code != kv.ErrorCode_RESOURCE_EXHAUSTED || e.RetryAfter <= 0 {
				return rev, err
			}
			again, wait = entries, e.RetryAfter // the whole batch refused by admission
		} else {
			rev = max(rev, r)
			for i, s := range statuses {
				switch s.Code {
				case kv.ErrorCode_OK:
				case kv.ErrorCode_RESOURCE_EXHAUSTED:
					again = append(again, entries[i])
				default:
					failed = append(failed, s)
				}
			}
		}
		if len(again) == 0 {
			break
		}
		w.stats.Retries++
		if !kvclient.Sleep(ctx, kvclient.Backoff(attempt, max(wait, time.Millisecond), maxRefusalWait, wait)) {
			return rev, fmt.Errorf("%d entries still refused by admission: %w", len(again), ctx.Err())
		}
		entries = again
	}
	if len(failed) > 0 {
		return rev, &chunkError{Failed: failed}
	}
	return rev, nil
}

func (w *refusalRetrier) Close() error { return w.transport.close() }

// putAllTransport writes a batch as one PutAll call.
type putAllTransport struct{ api kv.KVService }

func (t putAllTransport) write(ctx context.Context, entries []*kv.Entry) ([]*kv.KeyStatus, int64, time.Duration, error) {
	resp, err := t.api.PutAll(ctx, &kv.PutAllRequest{Entries: entries, Mode: kv.WriteMode_BEST_EFFORT})
	if err != nil {
		return nil, 0, 0, err
	}
	statuses, err := kvclient.Statuses(entries, resp.Results, resp.Revision)
	return statuses, resp.Revision, time.Duration(resp.RetryAfterMs) * time.Millisecond, err
}

func (putAllTransport) close() error { return nil }

// loadTransport writes a batch as one chunk of a Load stream, opened at the first batch and
// kept for the next ones, and waits for its acknowledgement. A stream that fails is closed;
// its error is the batch's (the batch may or may not be written, as a failed PutAll's), and
// the next batch opens a new stream.
type loadTransport struct {
	client *kvclient.Client
	loader *kvclient.Loader
	acks   chan kvclient.LoadAck
	chunk  int64
}

func (t *loadTransport) write(ctx context.Context, entries []*kv.Entry) ([]*kv.KeyStatus, int64, time.Duration, error) {
	if t.loader == nil {
		acks := make(chan kvclient.LoadAck, 1) // one chunk in flight: its ack never waits
		l, err := t.client.NewLoader(ctx, kvclient.WithLoadWindow(1), kvclient.WithLoadAcks(func(a kvclient.LoadAck) { acks <- a }))
		if err != nil {
			return nil, 0, 0, err
		}
		t.loader, t.acks = l, acks
	}
	t.chunk++
	if err := t.loader.Send(ctx, t.chunk, entries); err != nil {
		return nil, 0, 0, t.fail(err)
	}
	select {
	case a := <-t.acks:
		if a.Err != nil {
			return nil, 0, 0, a.Err
		}
		statuses, err := kvclient.Statuses(entries, a.Results, a.Revision)
		return statuses, a.Revision, a.RetryAfter, err
	case <-ctx.Done():
		return nil, 0, 0, t.fail(ctx.Err())
	case <-t.loader.Done():
		return nil, 0, 0, t.fail(t.loader.Close())
	}
}

// fail closes the stream after err and returns err (or the stream's own error when err is nil).
func (t *loadTransport) fail(err error) error {
	if cerr := t.close(); err == nil {
		err = cerr
	}
	return err
}

func (t *loadTransport) close() error {
	if t.loader == nil {
		return nil
	}
	err := t.loader.Close()
	t.loader, t.acks = nil, nil
	return err
}
