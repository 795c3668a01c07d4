// Package service holds putallkv's use cases: it validates calls against the configured limits,
// makes writes idempotent by request_id, and runs them against a store.Engine. It implements the
// generated kv.KVService interface, so the Kitex handler and the HTTP gateway share one
// implementation of the contract in DESIGN.md.
package service

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"putallkv/kitex_gen/kv"
	"putallkv/pkg/limiter"
	"putallkv/pkg/store"
)

// Limits bound what one call may carry. A call over a bound is refused with TOO_LARGE before it
// touches the store.
type Limits struct {
	MaxKeyBytes     int
	MaxValueBytes   int
	MaxBatchEntries int
}

// MaxRequestIDBytes bounds a request_id (the idempotency key).
const MaxRequestIDBytes = 128

// maxTTLMs bounds ttl_ms (ten years), so expiry times cannot overflow.
const maxTTLMs = 10 * 365 * 24 * int64(time.Hour/time.Millisecond)

// Options configure a Service.
type Options struct {
	Limits Limits
	// IdempotencyWindow is how long a request_id's response is kept.
	IdempotencyWindow time.Duration
	// IdempotencyMaxBytes bounds the bytes of the request_ids' records; 0 means
	// DefaultIdempotencyMaxBytes. When a record would cross it, the oldest are evicted.
	IdempotencyMaxBytes int64
	// Admission configures write admission; the zero value admits everything.
	Admission AdmissionSettings
	// Registerer receives the service's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// Recovery holds the idempotency records recovered with a durable store; nil for none.
	Recovery *Recovery
	// Now is the clock for TTLs and idempotency windows; nil means time.Now.
	Now func() time.Time
}

// Service implements kv.KVService over a store.Engine.
type Service struct {
	engine    store.Engine
	limits    Limits
	idem      *idempotency
	now       func() time.Time
	metrics   *metrics
	bucket    *limiter.Bucket
	admission atomic.Pointer[AdmissionSettings]
	// engineWaits is set when the engine's Apply waits for durability (see PutAllMany).
	engineWaits bool
}

var _ kv.KVService = (*Service)(nil)

// New returns a Service over engine. It registers its metrics with opts.Registerer.
func New(engine store.Engine, opts Options) (*Service, error) {
	l := opts.Limits
	if l.MaxKeyBytes <= 0 || l.MaxValueBytes <= 0 || l.MaxBatchEntries <= 0 {
		return nil, fmt.Errorf("service: limits must be positive, got %+v", l)
	}
	if opts.IdempotencyWindow <= 0 || opts.IdempotencyMaxBytes < 0 {
		return nil, fmt.Errorf("service: idempotency window must be positive and max bytes not negative")
	}
	if opts.IdempotencyMaxBytes == 0 {
		opts.IdempotencyMaxBytes = DefaultIdempotencyMaxBytes
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{
		engine: engine,
		limits: l,
		idem:   newIdempotency(opts.IdempotencyWindow, opts.IdempotencyMaxBytes, now),
		now:    now,
		bucket: limiter.New(0, 1, now),
	}
	if w, ok := engine.(interface{ WaitsForDurability() bool }); ok {
		s.engineWaits = w.WaitsForDurability()
	}
	a := opts.Admission
	if a.Burst <= 0 {
		a.Burst = l.MaxBatchEntries
	}
	if a.MaxChunk <= 0 {
		a.MaxChunk = l.MaxBatchEntries
	}
	s.SetAdmission(a)
	opts.Recovery.restore(s.idem)
	m, err := newMetrics(opts.Registerer, engine, s.idem, s.bucket)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// kvError builds the API's exception with a sentence for the caller.
func kvError(code kv.ErrorCode, format string, args ...any) *kv.KVError {
	return &kv.KVError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// codeOf returns the API code an error carries: OK for nil, INTERNAL for anything that is not
// a *kv.KVError.
func codeOf(err error) kv.ErrorCode {
	if err == nil {
		return kv.ErrorCode_OK
	}
	var ke *kv.KVError
	if errors.As(err, &ke) {
		return ke.Code
	}
	return kv.ErrorCode_INTERNAL
}

// entryError refuses a call because of entry i, naming it in the message and in failed.
func entryError(i int, key string, code kv.ErrorCode, format string, args ...any) *kv.KVError {
	e := kvError(code, "entries[%d]: %s", i, fmt.Sprintf(format, args...))
	e.Failed = []*kv.KeyStatus{{Key: key, Code: code}}
	return e
}

// checkKey validates a key against the limits; it returns a code and a sentence.
func (s *Service) checkKey(key string) (kv.ErrorCode, string) {
	switch {
	case key == "":
		return kv.ErrorCode_INVALID_ARGUMENT, "key must not be empty"
	case len(key) > s.limits.MaxKeyBytes:
		return kv.ErrorCode_TOO_LARGE, fmt.Sprintf("key of %d bytes is over the limit of %d bytes", len(key), s.limits.MaxKeyBytes)
	case !utf8.ValidString(key):
		return kv.ErrorCode_INVALID_ARGUMENT, "key is not valid UTF-8"
	}
	return kv.ErrorCode_OK, ""
}

// write is one entry of a write call as the caller sent it, before validation.
type write struct {
	key      string
	value    []byte
	del      bool
	expected *int64
	ttlMs    *int64
}

// toStoreWrite validates w and converts it; on failure it returns the code and a sentence.
func (s *Service) toStoreWrite(w write, nowMs int64) (store.Write, kv.ErrorCode, string) {
	if code, msg := s.checkKey(w.key); code != kv.ErrorCode_OK {
		return store.Write{}, code, msg
	}
	if len(w.value) > s.limits.MaxValueBytes {
		return store.Write{}, kv.ErrorCode_TOO_LARGE,
			fmt.Sprintf("value of %d bytes is over the limit of %d bytes", len(w.value), s.limits.MaxValueBytes)
	}
	sw := store.Write{Key: w.key, Value: w.value, Delete: w.del, ExpectedVersion: store.AnyVersion}
	if w.expected != nil {
		switch v := *w.expected; {
		case v < 0:
			return store.Write{}, kv.ErrorCode_INVALID_ARGUMENT, fmt.Sprintf("expected_version must be 0 (create-only) or positive, got %d", v)
		case v == 0 && w.del:
			return store.Write{}, kv.ErrorCode_INVALID_ARGUMENT, "expected_version 0 (create-only) has no meaning for a delete"
		default:
			sw.ExpectedVersion = v
		}
	}
	if w.ttlMs != nil {
		if t := *w.ttlMs; t <= 0 || t > maxTTLMs {
			return store.Write{}, kv.ErrorCode_INVALID_ARGUMENT, fmt.Sprintf("ttl_ms must be between 1 and %d, got %d", maxTTLMs, t)
		}
		sw.ExpiresAtMs = nowMs + *w.ttlMs
	}
	return sw, kv.ErrorCode_OK, ""
}

// toStoreWrites validates a batch of n entries, given by entry(i), and converts it.
func (s *Service) toStoreWrites(n int, entry func(int) write) ([]store.Write, error) {
	if err := s.checkBatchSize(n); err != nil {
		return nil, err
	}
	nowMs := s.now().UnixMilli()
	writes := make([]store.Write, n)
	for i := range writes {
		e := entry(i)
		w, code, msg := s.toStoreWrite(e, nowMs)
		if code != kv.ErrorCode_OK {
			return nil, entryError(i, e.key, code, "%s", msg)
		}
		writes[i] = w
	}
	return writes, nil
}

func (s *Service) checkBatchSize(n int) error {
	switch {
	case n == 0:
		return kvError(kv.ErrorCode_INVALID_ARGUMENT, "the batch is empty")
	case n > s.limits.MaxBatchEntries:
		return kvError(kv.ErrorCode_TOO_LARGE, "batch of %d entries is over the limit of %d entries", n, s.limits.MaxBatchEntries)
	}
	return nil
}

func storeMode(m kv.WriteMode) (store.Mode, error) {
	switch m {
	case kv.WriteMode_ATOMIC:
		return store.Atomic, nil
	case kv.WriteMode_BEST_EFFORT:
		return store.BestEffort, nil
	}
	return 0, kvError(kv.ErrorCode_INVALID_ARGUMENT, "mode must be ATOMIC or BEST_EFFORT, got %d", int64(m))
}

func storeCode(c store.Code) kv.ErrorCode {
	switch c {
	case store.OK:
		return kv.ErrorCode_OK
	case store.NotFound:
		return kv.ErrorCode_NOT_FOUND
	case store.VersionMismatch:
		return kv.ErrorCode_VERSION_MISMATCH
	case store.AlreadyExists:
		return kv.ErrorCode_ALREADY_EXISTS
	}
	return kv.ErrorCode_INTERNAL
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
}

// apply runs validated writes against the engine. An ATOMIC batch with a failing
// precondition is an error whose failed lists every failing key; a successful one leaves
// statuses alone (every entry was applied at the outcome's revision: see resultsToSend). A
// BEST_EFFORT batch is never an error for its preconditions, and fills statuses, one per
// write.
func (s *Service) apply(ctx context.Context, b store.Batch, statuses []*kv.KeyStatus) (store.Outcome, error) {
	writes := b.Writes
	results := make([]store.Result, len(writes))
	out, err := s.engine.Apply(ctx, b, results)
	if err != nil {
		return store.Outcome{}, storeError(err)
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

// storeError turns an engine failure into the API's terms.
func storeError(err error) *kv.KVError {
	if dup, ok := errors.AsType[*store.DuplicateKeyError](err); ok {
		return duplicateKeyError(dup.Key)
	}
	if q, ok := errors.AsType[*store.QuotaError](err); ok {
		return kvError(kv.ErrorCode_RESOURCE_EXHAUSTED, "the store is full, nothing was written: the write needs %d more bytes "+
			"and %d of the %d bytes of store.max_bytes are in use; delete keys (or let TTLs expire) or raise store.max_bytes",
			q.Grow, q.Used, q.Max)
	}
	switch {
	case errors.Is(err, store.ErrJournal):
		return kvError(kv.ErrorCode_UNAVAILABLE, "the write-ahead log is refusing writes, nothing was written: %v", err)
	case errors.Is(err, store.ErrNotDurable):
		return kvError(kv.ErrorCode_UNAVAILABLE, "the write was applied but not confirmed durable before the call ended; it may or may not survive a crash: %v", err)
	}
	return kvError(kv.ErrorCode_INTERNAL, "store: %v", err)
}

func duplicateKeyError(key string) *kv.KVError {
	e := kvError(kv.ErrorCode_INVALID_ARGUMENT, "key %q appears more than once; a key may appear once per request", key)
	e.Failed = []*kv.KeyStatus{{Key: key, Code: kv.ErrorCode_INVALID_ARGUMENT}}
	return e
}

// write admits and applies a validated multi-key write: ATOMIC as one admission of every key,
// BEST_EFFORT in chunks sized by the tokens in hand.
func (s *Service) write(ctx context.Context, mode store.Mode, writes []store.Write, key *idemKey) (batchResult, error) {
	if mode == store.BestEffort && !s.bucket.Unlimited() {
		return s.writeChunked(ctx, writes, make([]*kv.KeyStatus, len(writes)), key)
	}
	if err := s.admit(ctx, len(writes), mode.String()); err != nil {
		return batchResult{}, err
	}
	var statuses []*kv.KeyStatus // ATOMIC: none needed; see apply
	if mode == store.BestEffort {
		statuses = make([]*kv.KeyStatus, len(writes))
	}
	out, err := s.apply(ctx, store.Batch{Mode: mode, Writes: writes, Tag: key.tag(0, len(writes))}, statuses)
	if err != nil {
		return batchResult{}, err
	}
	return batchResult{statuses: statuses, revision: out.Revision, applied: out.Applied}, nil
}

// single admits and runs one write, and turns a failed precondition into an error.
func (s *Service) single(ctx context.Context, w write, key *idemKey) (store.Result, int64, error) {
	sw, code, msg := s.toStoreWrite(w, s.now().UnixMilli())
	if code != kv.ErrorCode_OK {
		return store.Result{}, 0, kvError(code, "%s", msg)
	}
	if err := s.admit(ctx, 1, "single"); err != nil {
		return store.Result{}, 0, err
	}
	results := make([]store.Result, 1)
	out, err := s.engine.Apply(ctx, store.Batch{Mode: store.Atomic, Writes: []store.Write{sw}, Tag: key.tag(0, 1)}, results)
	if err != nil {
		return store.Result{}, 0, storeError(err)
	}
	if r := results[0]; r.Code != store.OK {
		return store.Result{}, 0, preconditionFailure(&kv.KeyStatus{Key: w.key, Code: storeCode(r.Code), Version: r.Version})
	}
	return results[0], out.Revision, nil
}

// preconditionFailure is the error of a single-key write whose precondition failed: st names
// the key, the failure and its current version.
func preconditionFailure(st *kv.KeyStatus) *kv.KVError {
	e := kvError(st.Code, "key %q: %s (current version %d)", st.Key, preconditionSentence(st.Code), st.Version)
	e.Failed = []*kv.KeyStatus{st}
	return e
}

// atomicFailure is the error of an ATOMIC write of n entries that applied nothing because the
// entries of failed (every failing one, in entry order) failed their precondition.
func atomicFailure(failed []*kv.KeyStatus, n int) *kv.KVError {
	first := failed[0]
	e := kvError(first.Code, "atomic write applied nothing: %d of %d entries failed their precondition (first: key %q: %s)",
		len(failed), n, first.Key, first.Code)
	e.Failed = failed
	return e
}

func preconditionSentence(c kv.ErrorCode) string {
	switch c {
	case kv.ErrorCode_NOT_FOUND:
		return "no such key"
	case kv.ErrorCode_ALREADY_EXISTS:
		return "the key exists and the write was create-only"
	case kv.ErrorCode_VERSION_MISMATCH:
		return "the key's version is not the expected one"
	}
	return c.String()
}

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

// idempotent runs call once per request_id: a retry with the same id and payload gets the
// first outcome back (rebuilt from the record with the retry's keys, marked replayed, with the
// suggested_batch of now), a different payload is refused, and a retry that arrives while the
// first call runs waits for it. Without a request_id, call just runs.
func idempotent[T any, P writeResponse[T]](ctx context.Context, s *Service, method, requestID string, es writeEntries,
	call func(*idemKey) (P, error)) (P, error) {
	var zero P
	if requestID == "" {
		return call(nil)
	}
	if len(requestID) > MaxRequestIDBytes {
		return zero, kvError(kv.ErrorCode_INVALID_ARGUMENT, "request_id of %d bytes is over the limit of %d bytes", len(requestID), MaxRequestIDBytes)
	}
	key := &idemKey{method: method, id: requestID, digest: digestOf(method, es.mode, es.n, es.entry),
		createdMs: s.now().UnixMilli()}
	for {
		rec, done, owner, err := s.idem.begin(key)
		if err != nil {
			return zero, err
		}
		if owner {
			return runOwned(s.idem, rec, &es, func() (P, error) { return call(key) })
		}
		select {
		case <-done:
		case <-ctx.Done():
			return zero, kvError(kv.ErrorCode_UNAVAILABLE, "gave up waiting for the earlier call with request_id %q: %v", requestID, ctx.Err())
		}
		if !rec.kept {
			continue // the first call's outcome was transient: run for real
		}
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

// requestIDOf reads an optional request_id field.
func requestIDOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Put writes one key.
func (s *Service) Put(ctx context.Context, req *kv.PutRequest) (resp *kv.PutResponse, err error) {
	defer s.metrics.observe(mPut, &err)
	w := write{key: req.Key, value: req.Value, expected: req.ExpectedVersion, ttlMs: req.TtlMs}
	return idempotent(ctx, s, "Put", requestIDOf(req.RequestId), oneEntry(w),
		func(key *idemKey) (*kv.PutResponse, error) {
			r, _, err := s.single(ctx, w, key)
			if err != nil {
				return nil, err
			}
			return &kv.PutResponse{Version: r.Version, Created: r.Created, SuggestedBatch: s.suggest()}, nil
		})
}

// oneEntry is the entries of a single-key write of w.
func oneEntry(w write) writeEntries {
	return writeEntries{n: 1, entry: func(int) write { return w }}
}

// Get reads one key; an absent or expired key is NOT_FOUND.
func (s *Service) Get(ctx context.Context, req *kv.GetRequest) (resp *kv.GetResponse, err error) {
	defer s.metrics.observe(mGet, &err)
	if code, msg := s.checkKey(req.Key); code != kv.ErrorCode_OK {
		return nil, kvError(code, "%s", msg)
	}
	items := make([]store.Item, 1)
	if _, err := s.engine.GetAll(ctx, []string{req.Key}, items); err != nil {
		return nil, storeError(err)
	}
	if !items[0].Found {
		return nil, kvError(kv.ErrorCode_NOT_FOUND, "key %q: no such key", req.Key)
	}
	return &kv.GetResponse{Item: toItem(req.Key, items[0])}, nil
}

func toItem(key string, it store.Item) *kv.Item {
	return &kv.Item{Key: key, Value: it.Value, Version: it.Version, Found: it.Found, ExpiresAtMs: it.ExpiresAtMs}
}

// Delete removes one key; an absent key is NOT_FOUND.
func (s *Service) Delete(ctx context.Context, req *kv.DeleteRequest) (resp *kv.DeleteResponse, err error) {
	defer s.metrics.observe(mDelete, &err)
	w := write{key: req.Key, del: true, expected: req.ExpectedVersion}
	return idempotent(ctx, s, "Delete", requestIDOf(req.RequestId), oneEntry(w),
		func(key *idemKey) (*kv.DeleteResponse, error) {
			_, rev, err := s.single(ctx, w, key)
			if err != nil {
				return nil, err
			}
			return &kv.DeleteResponse{Revision: rev, SuggestedBatch: s.suggest()}, nil
		})
}

// PutAll writes many keys, atomically or key by key.
func (s *Service) PutAll(ctx context.Context, req *kv.PutAllRequest) (resp *kv.PutAllResponse, err error) {
	defer s.metrics.observe(mPutAll, &err)
	defer func(start time.Time) { s.metrics.observePutAll(req, err, start) }(time.Now())
	return batchCall[kv.PutAllResponse](ctx, s, "PutAll", req.Mode, req.RequestId, len(req.Entries), func(i int) write {
		e := req.Entries[i]
		return write{key: e.Key, value: e.Value, expected: e.ExpectedVersion, ttlMs: e.TtlMs}
	})
}

// GetAll reads many keys as of one revision.
func (s *Service) GetAll(ctx context.Context, req *kv.GetAllRequest) (resp *kv.GetAllResponse, err error) {
	defer s.metrics.observe(mGetAll, &err)
	if err := s.checkBatchSize(len(req.Keys)); err != nil {
		return nil, err
	}
	for i, k := range req.Keys {
		if code, msg := s.checkKey(k); code != kv.ErrorCode_OK {
			return nil, entryError(i, k, code, "%s", msg)
		}
	}
	items := make([]store.Item, len(req.Keys))
	rev, err := s.engine.GetAll(ctx, req.Keys, items)
	if err != nil {
		return nil, storeError(err)
	}
	out := &kv.GetAllResponse{Items: make([]*kv.Item, len(items)), Revision: rev}
	for i, it := range items {
		out.Items[i] = toItem(req.Keys[i], it)
	}
	return out, nil
}

// DeleteAll deletes many keys, atomically or key by key. An absent key is NOT_FOUND.
func (s *Service) DeleteAll(ctx context.Context, req *kv.DeleteAllRequest) (resp *kv.DeleteAllResponse, err error) {
	defer s.metrics.observe(mDeleteAll, &err)
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
// (entry(i) gives each as a write), then writes them once per request_id and answers with a P.
func batchCall[T any, P batchResponse[T]](ctx context.Context, s *Service, method string, m kv.WriteMode,
	requestID *string, n int, entry func(int) write) (P, error) {
	mode, err := storeMode(m)
	if err != nil {
		return nil, err
	}
	writes, err := s.toStoreWrites(n, entry)
	if err != nil {
		return nil, err
	}
	return idempotent(ctx, s, method, requestIDOf(requestID), writeEntries{mode: m, n: n, entry: entry},
		func(key *idemKey) (P, error) {
			r, err := s.write(ctx, mode, writes, key)
			if err != nil {
				return nil, err
			}
			resp := P(new(T))
			resp.SetResults(resultsToSend(r.statuses, r.revision))
			resp.SetRevision(r.revision)
			resp.SetApplied(int32(r.applied))
			resp.SetRetryAfterMs(retryAfterMs(r.retryAfter))
			resp.SetSuggestedBatch(s.suggest())
			return resp, nil
		})
}
