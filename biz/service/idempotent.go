package service

import (
	"context"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/tracing"
)

// MaxIdempotencyKeyBytes bounds an idempotency key (a write's request_id field).
const MaxIdempotencyKeyBytes = 128

// writeResponse is what every write response (a pointer P to a generated struct T) can do.
type writeResponse[T any] interface {
	*T
	SetReplayed(bool)
	SetSuggestedBatch(int32)
}

// writeEntries are a write call's entries as idempotency sees them: the mode and n entries,
// entry(i) giving each. (The method goes beside them, not in them: it is kept in the record,
// and escape analysis, which does not tell fields apart, would then move entry, and the
// caller's closure behind it, to the heap on every call.)
type writeEntries struct {
	mode  kv.WriteMode
	n     int
	entry func(int) write
}

// key is the key of entry i.
func (e *writeEntries) key(i int) string { return e.entry(i).key }

// idempotent runs call once per idempotency key (the request's request_id field): a retry with
// the same key and payload gets the first outcome back (rebuilt from the record with the
// retry's keys, marked replayed, with the suggested_batch of now), a different payload is
// refused, and a retry that arrives while the first call runs waits for it. Without an
// idempotency key, call just runs. The check (and any wait for the first call) is the
// idempotency stage; replayed marks a span whose call got the first outcome back.
func idempotent[T any, P writeResponse[T]](ctx context.Context, s *Service, method, idempotencyKey string, es writeEntries,
	call func(*idemKey) (P, error)) (P, error) {
	var zero P
	if idempotencyKey == "" {
		return call(nil)
	}
	_, span := tracing.Start(ctx, tracing.StageIdempotency)
	if len(idempotencyKey) > MaxIdempotencyKeyBytes {
		err := error(kvError(kv.ErrorCode_INVALID_ARGUMENT, "request_id of %d bytes is over the limit of %d bytes", len(idempotencyKey), MaxIdempotencyKeyBytes))
		endSpan(span, &err)
		return zero, err
	}
	key := &idemKey{method: method, id: idempotencyKey, digest: digestOf(method, es.mode, es.n, es.entry),
		createdMs: s.now().UnixMilli()}
	for {
		rec, done, owner, err := s.idem.begin(key)
		if err != nil {
			endSpan(span, &err)
			return zero, err
		}
		if owner {
			span.End()
			return runOwned(s.idem, rec, &es, func() (P, error) { return call(key) })
		}
		select {
		case <-done:
		case <-ctx.Done():
			err := error(kvError(kv.ErrorCode_UNAVAILABLE, "gave up waiting for the earlier call with request_id %q: %v", idempotencyKey, ctx.Err()))
			endSpan(span, &err)
			return zero, err
		}
		if !rec.kept {
			continue // the first call's outcome was transient: run for real
		}
		if span.IsRecording() {
			span.SetAttributes(tracing.Replayed.Bool(true))
		}
		span.End()
		if rec.out.code != kv.ErrorCode_OK {
			return zero, rec.out.err(method, es.n, es.key)
		}
		replay := rec.out.response(method, es.key).(P)
		replay.SetReplayed(true)
		replay.SetSuggestedBatch(s.suggest())
		return replay, nil
	}
}

// runOwned runs call for the owner of rec and records its outcome, even if call panics.
func runOwned[R any](m *idempotency, rec *idemRecord, es *writeEntries, call func() (R, error)) (resp R, err error) {
	finished := false
	defer func() {
		if !finished {
			m.finish(rec, nil, kvError(kv.ErrorCode_INTERNAL, "the call failed"), es.n, es.key)
		}
	}()
	resp, err = call()
	finished = true
	m.finish(rec, resp, err, es.n, es.key)
	return resp, err
}

// call names k's call, for the batch of its entries from offset on, to an engine that records
// calls itself (store.Batch.Call), so that a retry reaching another process is replayed too;
// nil k, nil call.
func (k *idemKey) call(offset int, window time.Duration) *store.Call {
	if k == nil {
		return nil
	}
	return &store.Call{ID: k.id, Digest: k.digest, Offset: offset, ExpiresAtMs: k.createdMs + window.Milliseconds()}
}

// idempotencyKeyOf reads an optional request_id field: a write's idempotency key, or "".
func idempotencyKeyOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// oneEntry is the entries of a single-key write of w.
func oneEntry(w write) writeEntries {
	return writeEntries{n: 1, entry: func(int) write { return w }}
}
