package service

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// PutAllMany answers each of req's calls exactly as PutAll would answer it alone. The calls
// that need nothing but the engine (no request_id, unlimited write admission) are validated in
// turn and handed to the engine together (store.ApplyAll): a durable engine logs them one after
// the other and waits once for the fsync that covers them all. A call that may wait on its own
// (for write admission's tokens, or for an earlier call with its request_id) runs as a PutAll:
// on a goroutine of its own when the engine or admission may make it wait, so that such calls
// wait together, otherwise in turn. The request as a whole is refused only when it has no calls
// or more than MaxBatchEntries; a missing call is that call's INVALID_ARGUMENT.
func (s *Service) PutAllMany(ctx context.Context, req *kv.PutAllManyRequest) (resp *kv.PutAllManyResponse, err error) {
	defer s.metrics.observe(mPutAllMany, 0, &err) // its calls count as PutAlls
	n := len(req.Calls)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		// Each call is a PutAll span below it; the calls applied together share one
		// store.apply stage, beside their PutAll spans.
		span.SetAttributes(tracing.Calls.Int(n))
	}
	switch {
	case n == 0:
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "the request has no calls")
	case n > s.limits.MaxBatchEntries:
		return nil, kvError(kv.ErrorCode_TOO_LARGE, "%d calls are over the limit of %d calls", n, s.limits.MaxBatchEntries)
	}
	backing := make([]kv.PutAllOutcome, n) // one allocation for every call's outcome
	faults := make([]error, n)
	side := s.engineWaits || !s.bucket.Unlimited()
	var together callGroup
	var wg sync.WaitGroup
	for i, call := range req.Calls {
		if call != nil && idempotencyKeyOf(call.RequestId) == "" && s.bucket.Unlimited() {
			together.add(call, &backing[i], &faults[i])
			continue
		}
		run := func() { faults[i] = s.putAllOutcome(ctx, call, &backing[i]) }
		if side {
			wg.Go(run)
		} else {
			run()
		}
	}
	together.run(ctx, s)
	wg.Wait()
	if err := errors.Join(faults...); err != nil {
		return nil, err // a bug: the caller's boundary (the handler) reports it as INTERNAL
	}
	resp = &kv.PutAllManyResponse{Outcomes: make([]*kv.PutAllOutcome, n)}
	for i := range backing {
		resp.Outcomes[i] = &backing[i]
	}
	return resp, nil
}

// callGroup is the calls of a PutAllMany that are applied with one store.ApplyAll.
type callGroup struct {
	calls  []*kv.PutAllRequest
	outs   []*kv.PutAllOutcome
	faults []*error
}

func (g *callGroup) add(call *kv.PutAllRequest, out *kv.PutAllOutcome, fault *error) {
	g.calls = append(g.calls, call)
	g.outs = append(g.outs, out)
	g.faults = append(g.faults, fault)
}

// run answers the group's calls as PutAll would, metrics included: it validates and admits each
// (a call refused there gets its outcome at once), applies the rest with one store.ApplyAll and
// builds their responses. A panic is the group's fault, reported as the first call's.
func (g *callGroup) run(ctx context.Context, s *Service) {
	if len(g.calls) == 0 {
		return
	}
	defer func() {
		if p := recover(); p != nil { // not on the handler's goroutine when the calls run as PutAlls
			*g.faults[0] = panicFault(p)
		}
	}()
	start := time.Now()
	n := len(g.calls)
	batches := make([]store.Batch, 0, n)
	results := make([][]store.Result, 0, n)
	at := make([]int, 0, n) // the call of each batch
	errs := make([]error, n)
	spans := make([]trace.Span, n)
	for i, call := range g.calls {
		var callCtx context.Context
		callCtx, spans[i] = startPutAll(ctx, call)
		mode, writes, err := s.batchWrites(callCtx, call.Mode, len(call.Entries), putAllEntry(call))
		if err == nil {
			err = s.admit(callCtx, len(writes), mode.String())
		}
		if err != nil {
			errs[i] = err
			continue
		}
		s.observe(writes)
		batches = append(batches, store.Batch{Mode: mode, Writes: writes})
		results = append(results, make([]store.Result, len(writes)))
		at = append(at, i)
	}
	outs := make([]store.Outcome, len(batches))
	applyErrs := make([]error, len(batches))
	s.engineApplyAll(ctx, batches, results, outs, applyErrs)
	resps := make([]*kv.PutAllResponse, n)
	for j, b := range batches {
		statuses := statusesFor(b.Mode, len(b.Writes))
		out, err := s.settle(b, results[j], outs[j], applyErrs[j], statuses)
		r, err := batchResultOf(statuses, out, err)
		resps[at[j]], errs[at[j]] = batchResponseOf[kv.PutAllResponse](s, r, err)
	}
	for i, call := range g.calls {
		err := errs[i]
		s.metrics.observe(mPutAll, len(call.Entries), &err)
		s.metrics.observePutAll(call, err, start)
		endSpan(spans[i], &err)
		*g.faults[i] = setOutcome(g.outs[i], resps[i], err)
	}
}

// putAllOutcome runs one call of a PutAllMany into out. It returns an error only for what is
// a bug, not an outcome: a panic (recovered here, since it is not on the handler's goroutine)
// or a failure that is not a *kv.KVError.
func (s *Service) putAllOutcome(ctx context.Context, call *kv.PutAllRequest, out *kv.PutAllOutcome) (fault error) {
	defer func() {
		if p := recover(); p != nil {
			fault = panicFault(p)
		}
	}()
	if call == nil {
		out.Error = kvError(kv.ErrorCode_INVALID_ARGUMENT, "the call is missing")
		return nil
	}
	resp, err := s.PutAll(ctx, call)
	return setOutcome(out, resp, err)
}

// panicFault is the fault of a PutAllMany whose call panicked with p.
func panicFault(p any) error {
	return fmt.Errorf("PutAllMany: panic in a call: %v\n%s", p, debug.Stack())
}

// setOutcome makes a call's response or error its outcome. It returns an error for a failure
// that is not a *kv.KVError: a bug.
func setOutcome(out *kv.PutAllOutcome, resp *kv.PutAllResponse, err error) error {
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
