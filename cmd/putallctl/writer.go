package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// chunkWriter writes one chunk of entries into putallkv for load, import and migrate: every
// entry applied (each with its own precondition), or an error naming the keys that were not.
// It is the one place those commands write through, so that the transport (PutAll calls now)
// can change in this file alone.
type chunkWriter interface {
	// WriteChunk applies entries and returns the revision of the last write it made (0 when
	// it wrote nothing). A *chunkError lists the entries refused for good (a failed
	// precondition, a value too large); entries admission refused are sent again, never
	// dropped, until ctx ends.
	WriteChunk(ctx context.Context, entries []*kv.Entry) (revision int64, err error)
}

// newChunkWriter returns the chunkWriter the commands use, counting its retries in st.
func newChunkWriter(api kv.KVService, st *moveStats) chunkWriter {
	return &putAllWriter{api: api, stats: st}
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

// putAllWriter writes a chunk as BEST_EFFORT PutAll calls: an entry refused
// RESOURCE_EXHAUSTED (admission: its tokens did not come in time) is resent, alone with the
// others refused, after the retry_after_ms the server asked for (and a backoff that grows
// while refusals continue); any other refusal is final and reported.
type putAllWriter struct {
	api   kv.KVService
	stats *moveStats
}

// maxRefusalWait bounds the wait between two attempts at refused entries.
const maxRefusalWait = 5 * time.Second

func (w *putAllWriter) WriteChunk(ctx context.Context, entries []*kv.Entry) (int64, error) {
	var rev int64
	var failed []*kv.KeyStatus
	for attempt := 0; len(entries) > 0; attempt++ {
		resp, err := w.api.PutAll(ctx, &kv.PutAllRequest{Entries: entries, Mode: kv.WriteMode_BEST_EFFORT})
		var wait time.Duration
		var again []*kv.Entry
		if err != nil {
			var e *kvclient.Error
			if !errors.As(err, &e) || e.Code != kv.ErrorCode_RESOURCE_EXHAUSTED || e.RetryAfter <= 0 {
				return rev, err
			}
			again, wait = entries, e.RetryAfter // the whole call refused by admission
		} else {
			statuses, err := kvclient.Statuses(entries, resp.Results, resp.Revision)
			if err != nil {
				return rev, err
			}
			rev = max(rev, resp.Revision)
			for i, s := range statuses {
				switch s.Code {
				case kv.ErrorCode_OK:
				case kv.ErrorCode_RESOURCE_EXHAUSTED:
					again = append(again, entries[i])
				default:
					failed = append(failed, s)
				}
			}
			wait = time.Duration(resp.RetryAfterMs) * time.Millisecond
		}
		if len(again) == 0 {
			break
		}
		w.stats.Retries++
		if !sleepCtx(ctx, refusalBackoff(attempt, wait)) {
			return rev, fmt.Errorf("%d entries still refused by admission: %w", len(again), ctx.Err())
		}
		entries = again
	}
	if len(failed) > 0 {
		return rev, &chunkError{Failed: failed}
	}
	return rev, nil
}

// refusalBackoff is the wait before attempt+1 at refused entries: the server's retry_after
// (at least a millisecond) doubled with each refusal in a row, at most maxRefusalWait, with
// jitter that never goes below retry_after.
func refusalBackoff(attempt int, retryAfter time.Duration) time.Duration {
	d := max(retryAfter, time.Millisecond)
	for range min(attempt, 10) {
		d *= 2
	}
	d = min(d, maxRefusalWait)
	return max(retryAfter, d/2+rand.N(d/2+1))
}

// sleepCtx waits d, or until ctx ends; it reports whether the whole d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
