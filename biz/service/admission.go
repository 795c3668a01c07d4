package service

import (
	"context"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/limiter"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// AdmissionSettings configure write admission: a token bucket of Rate keys per second (0 =
// unlimited) holding up to Burst tokens; one token per key written. A write waits for tokens at
// most MaxWait (and never past its deadline); a BEST_EFFORT batch is applied in chunks of at
// most MaxChunk keys, each the size of the tokens in hand.
type AdmissionSettings struct {
	Rate     float64
	Burst    int
	MaxWait  time.Duration
	MaxChunk int
}

// suggestWindow is how far ahead suggested_batch counts refill: a batch the size of the tokens
// in hand plus what refills in this window is likely to be admitted without waiting.
const suggestWindow = 10 * time.Millisecond

// SetAdmission changes write admission at run time; tokens in hand are kept.
func (s *Service) SetAdmission(a AdmissionSettings) {
	s.bucket.Set(a.Rate, a.Burst)
	s.admission.Store(&a)
}

// waitBudget is how long a call may wait for tokens: max wait, cut short by its deadline.
func (s *Service) waitBudget(ctx context.Context, maxWait time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(0, min(maxWait, dl.Sub(s.now())))
	}
	return maxWait
}

// admit takes n tokens for an all-or-nothing write, waiting for them within the budget (the
// admission stage).
func (s *Service) admit(ctx context.Context, n int, mode string) (err error) {
	_, span := tracing.Start(ctx, tracing.StageAdmission)
	defer endSpan(span, &err)
	a := s.admission.Load()
	g, retry, ok := s.bucket.Reserve(n, s.waitBudget(ctx, a.MaxWait))
	if !ok {
		return s.refuse(n, retry, mode)
	}
	return s.await(ctx, g)
}

// await waits out a grant's delay; a call whose context ends first gives the tokens back.
func (s *Service) await(ctx context.Context, g limiter.Grant) error {
	s.metrics.limiterWait.Observe(g.Delay.Seconds())
	if err := limiter.Wait(ctx, g.Delay); err != nil {
		g.Cancel()
		return kvError(kv.ErrorCode_UNAVAILABLE, "the call ended while waiting for write admission: %v", err)
	}
	return nil
}

// refuse builds the refusal of an n-key admission that did not fit.
func (s *Service) refuse(n int, retry time.Duration, mode string) error {
	s.metrics.limiterRejected.WithLabelValues(mode).Inc()
	if retry < 0 {
		_, burst := s.bucket.Limits()
		return kvError(kv.ErrorCode_TOO_LARGE,
			"a write of %d keys can never be admitted: the largest admissible batch is %d keys (limiter.burst)", n, burst)
	}
	e := kvError(kv.ErrorCode_RESOURCE_EXHAUSTED,
		"write admission is at its limit: %d keys need %s more of refill; retry after that", n, retry.Round(time.Millisecond))
	e.RetryAfterMs = retryAfterMs(retry)
	return e
}

// writeChunked applies a BEST_EFFORT batch in chunks, each the size of the tokens in hand (at
// least 1, at most max_chunk), for as long as the wait budget allows and the memory quota
// takes them. Entries not reached are reported RESOURCE_EXHAUSTED with no version, so a caller
// resends exactly those; none is applied twice and none is dropped silently. writes holds
// no key twice (writeBatch checked: a chunk's store call only sees its own keys).
func (s *Service) writeChunked(ctx context.Context, writes []store.Write, statuses []*kv.KeyStatus, key *idemKey) (batchResult, error) {
	a := s.admission.Load()
	giveUp := s.now().Add(s.waitBudget(ctx, a.MaxWait))
	r := batchResult{replayed: true}
	done := 0
	for done < len(writes) {
		_, span := tracing.Start(ctx, tracing.StageAdmission)
		g, retry, ok := s.bucket.ReserveUpTo(min(a.MaxChunk, len(writes)-done), max(0, giveUp.Sub(s.now())))
		if !ok {
			s.metrics.limiterRejected.WithLabelValues(store.BestEffort.String()).Inc()
			r.retryAfter = retry
			span.End()
			break
		}
		err := s.await(ctx, g)
		endSpan(span, &err)
		if err != nil {
			r.retryAfter = g.Delay
			break
		}
		chunk := store.Batch{Mode: store.BestEffort, Writes: writes[done : done+g.N], Tag: key.tag(done, len(writes)),
			Call: key.call(done, s.idem.window)}
		out, err := s.apply(ctx, chunk, statuses[done:done+g.N])
		if err != nil && done > 0 && codeOf(err) == kv.ErrorCode_RESOURCE_EXHAUSTED {
			break // the memory quota refused this chunk: earlier ones applied, report the rest
		}
		if err != nil {
			return batchResult{}, err
		}
		s.metrics.chunkSize.Observe(float64(g.N))
		if out.Applied > 0 {
			r.revision = out.Revision
		}
		r.applied += out.Applied
		r.replayed = r.replayed && out.Replayed
		done += g.N
	}
	r.replayed = r.replayed && done == len(writes)
	for i := done; i < len(writes); i++ {
		statuses[i] = &kv.KeyStatus{Key: writes[i].Key, Code: kv.ErrorCode_RESOURCE_EXHAUSTED}
	}
	r.statuses = statuses
	return r, nil
}

// suggest is the batch size admission can take now, for the suggested_batch of responses.
func (s *Service) suggest() int32 {
	n := s.bucket.Suggest(suggestWindow, s.limits.MaxBatchEntries)
	s.metrics.suggestedBatch.Set(float64(n))
	return int32(n)
}

// retryAfterMs rounds a retry-after up to whole milliseconds; 0 stays 0.
func retryAfterMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
