package service

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// PutAllMany answers each of req's calls exactly as PutAll would answer it alone. When a call
// may wait (for write admission's tokens, or for a durable engine's fsync), the calls run
// side by side, every one but the first on a goroutine of its own, so that they wait
// together (one group commit for all) rather than one after another; otherwise they run in
// turn on the caller's goroutine, which costs less (no goroutine to start, no stack to
// grow). The request as a whole is refused only when it has no calls or more than
// MaxBatchEntries; a missing call is that call's INVALID_ARGUMENT.
func (s *Service) PutAllMany(ctx context.Context, req *kv.PutAllManyRequest) (resp *kv.PutAllManyResponse, err error) {
	defer s.metrics.observe(mPutAllMany, 0, &err) // its calls count as PutAlls
	n := len(req.Calls)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(tracing.Calls.Int(n)) // each call is a PutAll span below it
	}
	switch {
	case n == 0:
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "the request has no calls")
	case n > s.limits.MaxBatchEntries:
		return nil, kvError(kv.ErrorCode_TOO_LARGE, "%d calls are over the limit of %d calls", n, s.limits.MaxBatchEntries)
	}
	backing := make([]kv.PutAllOutcome, n) // one allocation for every call's outcome
	faults := make([]error, n)
	run := func(i int) { faults[i] = s.putAllOutcome(ctx, req.Calls[i], &backing[i]) }
	if s.engineWaits || !s.bucket.Unlimited() {
		var wg sync.WaitGroup
		for i := 1; i < n; i++ {
			wg.Go(func() { run(i) })
		}
		run(0) // once the others have started, so that all of them wait together
		wg.Wait()
	} else {
		for i := range n {
			run(i)
		}
	}
	if err := errors.Join(faults...); err != nil {
		return nil, err // a bug: the caller's boundary (the handler) reports it as INTERNAL
	}
	resp = &kv.PutAllManyResponse{Outcomes: make([]*kv.PutAllOutcome, n)}
	for i := range backing {
		resp.Outcomes[i] = &backing[i]
	}
	return resp, nil
}

// putAllOutcome runs one call of a PutAllMany into out. It returns an error only for what is
// a bug, not an outcome: a panic (recovered here, since it is not on the handler's goroutine)
// or a failure that is not a *kv.KVError.
func (s *Service) putAllOutcome(ctx context.Context, call *kv.PutAllRequest, out *kv.PutAllOutcome) (fault error) {
	defer func() {
		if p := recover(); p != nil {
			fault = fmt.Errorf("PutAllMany: panic in a call: %v\n%s", p, debug.Stack())
		}
	}()
	if call == nil {
		out.Error = kvError(kv.ErrorCode_INVALID_ARGUMENT, "the call is missing")
		return nil
	}
	resp, err := s.PutAll(ctx, call)
	if err == nil {
		out.Response = resp
		return nil
	}
	ke, ok := errors.AsType[*kv.KVError](err)
	if !ok {
		return fmt.Errorf("PutAllMany: a call failed: %w", err)
	}
	out.Error = ke
	return nil
}
