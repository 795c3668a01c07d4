package service

import (
	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// outcome is what an idempotency record keeps of a write call: what a replay needs to answer
// exactly as the first call did, and nothing the retry brings again. A retry carries the same
// entries (its payload digest is the first call's), so the record keeps no key and no value:
// each listed entry is its index, code and version, and the keys are put back from the retry
// when the answer is rebuilt. The response or error the record used to keep named every key:
// a failing ATOMIC PutAll of 1000 keys of 1 KiB held a megabyte; its outcome holds 16 KB.
type outcome struct {
	// code is OK for a response, else the code of the precondition failure that refused the
	// call (only those are kept: see transient).
	code kv.ErrorCode
	// applied, revision, created and retryAfterMs are the response's fields (revision is
	// a Put's version).
	applied      int32
	created      bool
	revision     int64
	retryAfterMs int64
	// entries are a multi-key response's results, one per entry, or none when the response
	// left them out; for a failure, the failing entries, in entry order.
	entries []entryOutcome
}

// entryOutcome is one entry's status without its key, in 16 bytes (a kv.ErrorCode is 8).
type entryOutcome struct {
	index   int32
	code    int32 // a kv.ErrorCode
	version int64
}

// batchResults is what PutAllResponse and DeleteAllResponse have in common.
type batchResults interface {
	GetResults() []*kv.KeyStatus
	GetRevision() int64
	GetApplied() int32
	GetRetryAfterMs() int64
}

// outcomeOf keeps of a call's response, or of its precondition failure, what a replay needs.
// The call has n entries, key(i) the key of entry i. It reports false for what cannot be
// replayed from the entries: an error that is not a *kv.KVError, or one naming a key that is
// not among them.
func outcomeOf(resp any, err error, n int, key func(int) string) (outcome, bool) {
	if err != nil {
		return failureOutcome(err, n, key)
	}
	switch r := resp.(type) {
	case *kv.PutResponse:
		return outcome{revision: r.Version, created: r.Created}, true
	case *kv.DeleteResponse:
		return outcome{revision: r.Revision}, true
	case batchResults:
		o := outcome{revision: r.GetRevision(), applied: r.GetApplied(), retryAfterMs: r.GetRetryAfterMs()}
		if results := r.GetResults(); results != nil {
			o.entries = make([]entryOutcome, len(results))
			for i, st := range results {
				o.entries[i] = entryOutcome{index: int32(i), code: int32(st.Code), version: st.Version}
			}
		}
		return o, true
	}
	return outcome{}, false
}

// failureOutcome is outcomeOf for a failed call. Its failed keys are in entry order (and keys
// are distinct within a call), so one pass over the entries finds each one's index.
func failureOutcome(err error, n int, key func(int) string) (outcome, bool) {
	ke, ok := err.(*kv.KVError)
	if !ok {
		return outcome{}, false
	}
	o := outcome{code: ke.Code, entries: make([]entryOutcome, len(ke.Failed))}
	i := 0
	for j, st := range ke.Failed {
		for i < n && key(i) != st.Key {
			i++
		}
		if i == n {
			return outcome{}, false
		}
		o.entries[j] = entryOutcome{index: int32(i), code: int32(st.Code), version: st.Version}
		i++
	}
	return o, true
}

// response rebuilds the response of a call of method from o; key(i) is the key of entry i.
func (o *outcome) response(method string, key func(int) string) any {
	switch method {
	case "Put":
		return &kv.PutResponse{Version: o.revision, Created: o.created}
	case "Delete":
		return &kv.DeleteResponse{Revision: o.revision}
	case "PutAll":
		return &kv.PutAllResponse{Results: o.statuses(key), Revision: o.revision, Applied: o.applied, RetryAfterMs: o.retryAfterMs}
	case "DeleteAll":
		return &kv.DeleteAllResponse{Results: o.statuses(key), Revision: o.revision, Applied: o.applied, RetryAfterMs: o.retryAfterMs}
	}
	return nil
}

// err rebuilds the precondition failure of a call of method with n entries from o.
func (o *outcome) err(method string, n int, key func(int) string) error {
	failed := o.statuses(key)
	if method == "Put" || method == "Delete" {
		return preconditionFailure(failed[0])
	}
	return atomicFailure(failed, n)
}

// statuses lists o's entries with their keys, or nil when it has none.
func (o *outcome) statuses(key func(int) string) []*kv.KeyStatus {
	if o.entries == nil {
		return nil
	}
	backing := make([]kv.KeyStatus, len(o.entries)) // one allocation for every status
	out := make([]*kv.KeyStatus, len(o.entries))
	for i, e := range o.entries {
		backing[i] = kv.KeyStatus{Key: key(int(e.index)), Code: kv.ErrorCode(e.code), Version: e.version}
		out[i] = &backing[i]
	}
	return out
}
