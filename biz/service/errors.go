package service

import (
	"errors"
	"fmt"
	"strings"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

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
	if cs, ok := errors.AsType[*store.CrossSlotError](err); ok {
		e := kvError(kv.ErrorCode_CROSS_SLOT, "nothing was written: %s", strings.TrimPrefix(cs.Error(), "store: "))
		e.Failed = []*kv.KeyStatus{{Key: cs.First, Code: kv.ErrorCode_CROSS_SLOT}, {Key: cs.Second, Code: kv.ErrorCode_CROSS_SLOT}}
		return e
	}
	switch {
	case errors.Is(err, store.ErrJournal):
		return kvError(kv.ErrorCode_UNAVAILABLE, "the write-ahead log is refusing writes, nothing was written: %v", err)
	case errors.Is(err, store.ErrRequestConflict):
		return kvError(kv.ErrorCode_IDEMPOTENCY_CONFLICT, "request_id was already used for a different request: %v", err)
	case errors.Is(err, store.ErrRefused):
		return kvError(kv.ErrorCode_UNAVAILABLE, "the store refused the call for now, nothing was written; retry later: %v", err)
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
