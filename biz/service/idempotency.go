package service

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"

	"putallkv/kitex_gen/kv"
)

// idempotency remembers, per request_id, a digest of the request and its response, so a retry
// gets the first response back and writes nothing, and a reuse of the id for another payload is
// refused. Records live for a window and their number is bounded: the oldest go first.
type idempotency struct {
	window     time.Duration
	maxRecords int
	now        func() time.Time

	mu      sync.Mutex
	records map[string]*idemRecord
	byAge   list.List // of *idemRecord, oldest first
}

// digest identifies a request's payload: the method and every field except request_id.
type digest [sha256.Size]byte

// idemKey identifies an idempotent call: its method, request_id and payload digest.
type idemKey struct {
	method string
	id     string
	digest digest
	// createdMs is when the first call began (Unix ms), which its window counts from after a
	// restart.
	createdMs int64
}

type idemRecord struct {
	key     *idemKey
	created time.Time
	elem    *list.Element
	// done is closed when the first call has finished; resp, err and kept are set before.
	done chan struct{}
	resp any
	err  error
	// kept is false when the outcome was transient (the call may be retried for real), in
	// which case the record was dropped and a waiter must run the call itself.
	kept bool
}

func newIdempotency(window time.Duration, maxRecords int, now func() time.Time) *idempotency {
	return &idempotency{window: window, maxRecords: maxRecords, now: now, records: make(map[string]*idemRecord)}
}

// begin claims id for a call with payload d. It returns owner=true when the caller is the first
// and must call finish; otherwise rec is the record of the first call, which the caller waits
// for (see wait). A reuse of id with another payload is IDEMPOTENCY_CONFLICT.
func (m *idempotency) begin(key *idemKey) (rec *idemRecord, owner bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.expire(now)
	if rec := m.records[key.id]; rec != nil {
		if rec.key.method != key.method || rec.key.digest != key.digest {
			return nil, false, kvError(kv.ErrorCode_IDEMPOTENCY_CONFLICT,
				"request_id %q was already used for a different request", key.id)
		}
		return rec, false, nil
	}
	rec = &idemRecord{key: key, created: now, done: make(chan struct{})}
	m.insert(rec)
	return rec, true, nil
}

// insert adds rec as the newest record, evicting the oldest beyond the bound.
func (m *idempotency) insert(rec *idemRecord) {
	for len(m.records) >= m.maxRecords {
		m.drop(m.byAge.Front().Value.(*idemRecord))
	}
	rec.elem = m.byAge.PushBack(rec)
	m.records[rec.key.id] = rec
}

// finish records the outcome of the owner's call and releases its waiters. A transient outcome
// is not remembered: the next call with the same id runs for real.
func (m *idempotency) finish(rec *idemRecord, resp any, err error) {
	m.mu.Lock()
	rec.resp, rec.err, rec.kept = resp, err, !transient(err)
	if !rec.kept && m.records[rec.key.id] == rec {
		m.drop(rec)
	}
	m.mu.Unlock()
	close(rec.done)
}

// expire drops records older than the window; they are oldest first.
func (m *idempotency) expire(now time.Time) {
	for e := m.byAge.Front(); e != nil; e = m.byAge.Front() {
		rec := e.Value.(*idemRecord)
		if now.Sub(rec.created) < m.window {
			return
		}
		m.drop(rec)
	}
}

func (m *idempotency) drop(rec *idemRecord) {
	m.byAge.Remove(rec.elem)
	delete(m.records, rec.key.id)
}

// size returns the number of records held.
func (m *idempotency) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// transient reports whether an outcome may differ on a retry (admission, availability, bugs),
// so it must not be replayed. Precondition failures are outcomes of the write and are kept.
func transient(err error) bool {
	if err == nil {
		return false
	}
	switch codeOf(err) {
	case kv.ErrorCode_VERSION_MISMATCH, kv.ErrorCode_ALREADY_EXISTS, kv.ErrorCode_NOT_FOUND:
		return false
	}
	return true
}

// hasher builds a digest from length-prefixed fields, so that no two different payloads
// encode to the same bytes.
type hasher struct {
	h   hash.Hash
	buf [binary.MaxVarintLen64]byte
}

// digestOf is the payload digest of a write call: its method, mode and n entries, every field
// but the request_id.
func digestOf(method string, mode kv.WriteMode, n int, entry func(int) write) digest {
	h := newHasher(method)
	h.int(int64(mode))
	h.int(int64(n))
	for i := range n {
		w := entry(i)
		h.str(w.key)
		h.bytes(w.value)
		h.opt(w.expected)
		h.opt(w.ttlMs)
	}
	return h.sum()
}

// newHasher starts a payload digest; method keeps equal payloads of different methods apart.
func newHasher(method string) *hasher {
	h := &hasher{h: sha256.New()}
	h.str(method)
	return h
}

func (h *hasher) int(v int64) {
	h.h.Write(binary.AppendVarint(h.buf[:0], v))
}

func (h *hasher) bytes(b []byte) {
	h.int(int64(len(b)))
	h.h.Write(b)
}

func (h *hasher) str(s string) {
	h.int(int64(len(s)))
	h.h.Write([]byte(s))
}

// opt encodes an optional integer so that absent differs from every value.
func (h *hasher) opt(v *int64) {
	if v == nil {
		h.int(0)
		return
	}
	h.int(1)
	h.int(*v)
}

func (h *hasher) sum() (d digest) {
	h.h.Sum(d[:0])
	return d
}
