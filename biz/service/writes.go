package service

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// Put writes one key.
func (s *Service) Put(ctx context.Context, req *kv.PutRequest) (resp *kv.PutResponse, err error) {
	defer s.metrics.observe(mPut, 1, &err)
	w := write{key: req.Key, value: req.Value, expected: req.ExpectedVersion, ttlMs: req.TtlMs}
	return idempotent(ctx, s, "Put", idempotencyKeyOf(req.RequestId), oneEntry(w),
		func(key *idemKey) (*kv.PutResponse, error) {
			r, out, err := s.single(ctx, w, key)
			if err != nil {
				return nil, err
			}
			return &kv.PutResponse{Version: r.Version, Created: r.Created, SuggestedBatch: s.suggest(), Replayed: out.Replayed}, nil
		})
}

// Delete removes one key; an absent key is NOT_FOUND.
func (s *Service) Delete(ctx context.Context, req *kv.DeleteRequest) (resp *kv.DeleteResponse, err error) {
	defer s.metrics.observe(mDelete, 1, &err)
	w := write{key: req.Key, del: true, expected: req.ExpectedVersion}
	return idempotent(ctx, s, "Delete", idempotencyKeyOf(req.RequestId), oneEntry(w),
		func(key *idemKey) (*kv.DeleteResponse, error) {
			_, out, err := s.single(ctx, w, key)
			if err != nil {
				return nil, err
			}
			return &kv.DeleteResponse{Revision: out.Revision, SuggestedBatch: s.suggest(), Replayed: out.Replayed}, nil
		})
}

// PutAll writes many keys, atomically or key by key. Traced, it is a span of its own (under
// the call's RPC or HTTP span, or its PutAllMany's) with the batch's size and mode, whose
// children are the stages: validate, idempotency, admission, store.apply (wal.wait).
func (s *Service) PutAll(ctx context.Context, req *kv.PutAllRequest) (resp *kv.PutAllResponse, err error) {
	defer s.metrics.observe(mPutAll, len(req.Entries), &err)
	defer func(start time.Time) { s.metrics.observePutAll(req, err, start) }(time.Now())
	ctx, span := startPutAll(ctx, req)
	defer endSpan(span, &err)
	return batchCall[kv.PutAllResponse](ctx, s, "PutAll", req.Mode, req.RequestId, len(req.Entries), putAllEntry(req))
}

// startPutAll starts a PutAll's span, with the batch's size and mode.
func startPutAll(ctx context.Context, req *kv.PutAllRequest) (context.Context, trace.Span) {
	ctx, span := tracing.Start(ctx, "PutAll")
	if span.IsRecording() {
		span.SetAttributes(tracing.BatchSize.Int(len(req.Entries)), tracing.Mode.String(req.Mode.String()))
	}
	return ctx, span
}

// putAllEntry returns a PutAll's entries as writes, for batchCall.
func putAllEntry(req *kv.PutAllRequest) func(int) write {
	return func(i int) write {
		e := req.Entries[i]
		return write{key: e.Key, value: e.Value, expected: e.ExpectedVersion, ttlMs: e.TtlMs}
	}
}

// DeleteAll deletes many keys, atomically or key by key. An absent key is NOT_FOUND.
func (s *Service) DeleteAll(ctx context.Context, req *kv.DeleteAllRequest) (resp *kv.DeleteAllResponse, err error) {
	defer s.metrics.observe(mDeleteAll, len(req.Entries), &err)
	return batchCall[kv.DeleteAllResponse](ctx, s, "DeleteAll", req.Mode, req.RequestId, len(req.Entries), func(i int) write {
		e := req.Entries[i]
		return write{key: e.Key, del: true, expected: e.ExpectedVersion}
	})
}

// batchResponse is what PutAllResponse and DeleteAllResponse (P, pointing to T) can do.
type batchResponse[T any] interface {
	writeResponse[T]
	SetResults([]*kv.KeyStatus)
	SetRevision(int64)
	SetApplied(int32)
	SetRetryAfterMs(int64)
}

// batchCall is the body of PutAll and DeleteAll: it validates the mode and the n entries
// (entry(i) gives each as a write), then writes them once per idempotency key and answers with
// a P.
func batchCall[T any, P batchResponse[T]](ctx context.Context, s *Service, method string, m kv.WriteMode,
	idempotencyKey *string, n int, entry func(int) write) (P, error) {
	mode, writes, err := s.batchWrites(ctx, m, n, entry)
	if err != nil {
		return nil, err
	}
	return idempotent(ctx, s, method, idempotencyKeyOf(idempotencyKey), writeEntries{mode: m, n: n, entry: entry},
		func(key *idemKey) (P, error) {
			r, err := s.writeBatch(ctx, mode, writes, key)
			return batchResponseOf[T, P](s, r, err)
		})
}

// batchWrites validates a multi-key write's mode and its n entries (entry(i) gives each): the
// validate stage.
func (s *Service) batchWrites(ctx context.Context, m kv.WriteMode, n int, entry func(int) write) (store.Mode, []store.Write, error) {
	_, span := tracing.Start(ctx, tracing.StageValidate)
	mode, err := storeMode(m)
	var writes []store.Write
	if err == nil {
		writes, err = s.toStoreWrites(n, entry)
	}
	endSpan(span, &err)
	return mode, writes, err
}

// batchResponseOf answers a multi-key write with a P, from its result or its error.
func batchResponseOf[T any, P batchResponse[T]](s *Service, r batchResult, err error) (P, error) {
	if err != nil {
		return nil, err
	}
	resp := P(new(T))
	resp.SetResults(resultsToSend(r.statuses, r.revision))
	resp.SetRevision(r.revision)
	resp.SetApplied(int32(r.applied))
	resp.SetRetryAfterMs(retryAfterMs(r.retryAfter))
	resp.SetSuggestedBatch(s.suggest())
	resp.SetReplayed(r.replayed)
	return resp, nil
}

// batchResult is the outcome of a multi-key write in API terms.
type batchResult struct {
	// statuses has one status per write, or is nil for a successful ATOMIC write.
	statuses []*kv.KeyStatus
	// revision is the revision of the last chunk applied (every chunk's keys share one).
	revision int64
	applied  int
	// retryAfter is set when BEST_EFFORT entries were not admitted in time.
	retryAfter time.Duration
	// replayed is set when the engine answered every entry from its records of the call
	// (store.Outcome.Replayed).
	replayed bool
}

// apply runs validated writes against the engine. An ATOMIC batch with a failing
// precondition is an error whose failed lists every failing key; a successful one leaves
// statuses alone (every entry was applied at the outcome's revision: see resultsToSend). A
// BEST_EFFORT batch is never an error for its preconditions, and fills statuses, one per
// write.
func (s *Service) apply(ctx context.Context, b store.Batch, statuses []*kv.KeyStatus) (store.Outcome, error) {
	results := make([]store.Result, len(b.Writes))
	s.observe(b.Writes)
	out, err := s.engineApply(ctx, b, results)
	return s.settle(b, results, out, err, statuses)
}

// settle turns the engine's answer to b (results, out, err) into apply's.
func (s *Service) settle(b store.Batch, results []store.Result, out store.Outcome, err error, statuses []*kv.KeyStatus) (store.Outcome, error) {
	writes := b.Writes
	if err != nil {
		return store.Outcome{}, err
	}
	if b.Mode == store.Atomic {
		if out.Applied == len(writes) {
			return out, nil
		}
		var failed []*kv.KeyStatus
		for i, r := range results {
			if r.Code != store.OK {
				failed = append(failed, &kv.KeyStatus{Key: writes[i].Key, Code: storeCode(r.Code), Version: r.Version})
			}
		}
		if len(failed) == 0 {
			return store.Outcome{}, kvError(kv.ErrorCode_INTERNAL, "store: atomic write applied %d of %d entries", out.Applied, len(writes))
		}
		return store.Outcome{}, atomicFailure(failed, len(writes))
	}
	backing := make([]kv.KeyStatus, len(results)) // one allocation for every key's status
	for i, r := range results {
		backing[i] = kv.KeyStatus{Key: writes[i].Key, Code: storeCode(r.Code), Version: r.Version}
		statuses[i] = &backing[i]
	}
	return out, nil
}

// observe tells the KeyObserver, if any, of writes' keys.
func (s *Service) observe(writes []store.Write) {
	if s.writes == nil {
		return
	}
	for i := range writes {
		s.writes.Observe(writes[i].Key)
	}
}

// resultsToSend returns the results a multi-key write's response carries: none when every
// entry was applied at revision (a successful ATOMIC call, or a BEST_EFFORT call applied at
// once), since the caller then knows each key's outcome from revision alone and the call's
// answer is a fraction of the size; else one status per entry.
func resultsToSend(statuses []*kv.KeyStatus, revision int64) []*kv.KeyStatus {
	for _, st := range statuses {
		if st.Code != kv.ErrorCode_OK || st.Version != revision {
			return statuses
		}
	}
	return nil
}

// writeBatch admits and applies a validated multi-key write: ATOMIC as one admission of every
// key, BEST_EFFORT in chunks sized by the tokens in hand. While admission is limited, a
// repeated key is refused before the call takes tokens (the store would refuse the batch
// only after they were spent); otherwise the store finds it, at no extra cost to every call.
func (s *Service) writeBatch(ctx context.Context, mode store.Mode, writes []store.Write, key *idemKey) (batchResult, error) {
	if !s.bucket.Unlimited() {
		if key, dup := store.FirstRepeat(writes); dup {
			return batchResult{}, duplicateKeyError(key)
		}
		if mode == store.BestEffort {
			return s.writeChunked(ctx, writes, make([]*kv.KeyStatus, len(writes)), key)
		}
	}
	if err := s.admit(ctx, len(writes), mode.String()); err != nil {
		return batchResult{}, err
	}
	statuses := statusesFor(mode, len(writes))
	out, err := s.apply(ctx, store.Batch{Mode: mode, Writes: writes, Tag: key.tag(0, len(writes)),
		Call: key.call(0, s.idem.window)}, statuses)
	return batchResultOf(statuses, out, err)
}

// statusesFor returns what apply fills for a write of n keys: none for ATOMIC (see apply), one
// per key for BEST_EFFORT.
func statusesFor(mode store.Mode, n int) []*kv.KeyStatus {
	if mode == store.BestEffort {
		return make([]*kv.KeyStatus, n)
	}
	return nil
}

// batchResultOf is the result of a multi-key write applied at once, from apply's answer.
func batchResultOf(statuses []*kv.KeyStatus, out store.Outcome, err error) (batchResult, error) {
	if err != nil {
		return batchResult{}, err
	}
	return batchResult{statuses: statuses, revision: out.Revision, applied: out.Applied, replayed: out.Replayed}, nil
}

// single admits and runs one write, and turns a failed precondition into an error.
func (s *Service) single(ctx context.Context, w write, key *idemKey) (store.Result, store.Outcome, error) {
	sw, code, msg := s.toStoreWrite(w, s.now().UnixMilli())
	if code != kv.ErrorCode_OK {
		return store.Result{}, store.Outcome{}, kvError(code, "%s", msg)
	}
	if err := s.admit(ctx, 1, "single"); err != nil {
		return store.Result{}, store.Outcome{}, err
	}
	results := make([]store.Result, 1)
	writes := []store.Write{sw}
	s.observe(writes)
	out, err := s.engineApply(ctx, store.Batch{Mode: store.Atomic, Writes: writes, Tag: key.tag(0, 1),
		Call: key.call(0, s.idem.window)}, results)
	if err != nil {
		return store.Result{}, store.Outcome{}, err
	}
	if r := results[0]; r.Code != store.OK {
		return store.Result{}, store.Outcome{}, preconditionFailure(&kv.KeyStatus{Key: w.key, Code: storeCode(r.Code), Version: r.Version})
	}
	return results[0], out, nil
}

// engineApply runs b on the engine (the store.apply stage), its failure in API terms.
func (s *Service) engineApply(ctx context.Context, b store.Batch, results []store.Result) (store.Outcome, error) {
	ctx, span := tracing.Start(ctx, tracing.StageApply)
	out, err := s.engine.Apply(ctx, b, results)
	if err != nil {
		err = storeError(err)
	}
	endSpan(span, &err)
	return out, err
}

// engineApplyAll runs batches on the engine at once (store.ApplyAll; one store.apply stage for
// them all), each failure in API terms.
func (s *Service) engineApplyAll(ctx context.Context, batches []store.Batch, results [][]store.Result, outs []store.Outcome, errs []error) {
	ctx, span := tracing.Start(ctx, tracing.StageApply)
	store.ApplyAll(ctx, s.engine, batches, results, outs, errs)
	var failed error
	for i, err := range errs {
		if err != nil {
			errs[i] = storeError(err)
			failed = errs[i]
		}
	}
	endSpan(span, &failed)
}
