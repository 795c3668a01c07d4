package service

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// maxTTLMs bounds ttl_ms (ten years), so expiry times cannot overflow.
const maxTTLMs = 10 * 365 * 24 * int64(time.Hour/time.Millisecond)

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
