package service

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// idempotency remembers, per request_id, a digest of the request and the outcome of its first
// call, so a retry gets the first response back and writes nothing, and a reuse of the id for
// another payload is refused. A record lives for the window. The records are bounded in bytes
// (as recordBytes and entryBytes count them, which cover what they hold on the heap): when one
// more would cross the bound, the oldest are evicted before their window is over, and each
// such eviction is counted, since a retry of an evicted call runs again.
type idempotency struct {
	window   time.Duration
	maxBytes int64
	now      func() time.Time

	mu      sync.Mutex
	records map[string]*idemRecord
	byAge   list.List // of *idemRecord, oldest first
	bytes   int64     // the cost of every record held
	evicted uint64    // records dropped inside their window to keep to maxBytes
}

// A record costs recordBytes, plus its request_id's length, plus entryBytes per entry its
// outcome lists. recordBytes covers the record with its outcome (160 bytes), its list element
// (48) and its share of the map (up to 55 just after the map grew), and the rounding of the
// request_id to an allocation size; entryBytes adds an eighth to an entry's 16 bytes for the
// rounding of the entries' slice. TestIdempotencyCostCoversHeap checks them against the heap.
const (
	recordBytes = 300
	entryBytes  = int64(unsafe.Sizeof(entryOutcome{})) * 9 / 8
)

// DefaultIdempotencyMaxBytes bounds the records when Options leave it 0: 64 MiB holds about
// 200 000 records of calls that succeeded, or 3 600 of ATOMIC calls of 1000 entries that all
// failed their preconditions.
const DefaultIdempotencyMaxBytes = 64 << 20

// digest identifies a request's payload: the method and every field except request_id.
type digest [sha256.Size]byte

// idemKey identifies an idempotent call: its method, request_id and payload digest.
type idemKey struct {
	method string
	id     string
	digest digest
	// createdMs is when the first call began (Unix ms); its window counts from then, also
	// after a restart.
	createdMs int64
}

type idemRecord struct {
	key  idemKey
	elem *list.Element
	cost int64
	// done is closed when the first call has finished; out and kept are set before. A
	// finished record's done is closedDone (its own channel goes with the waiters), and it is
	// read under the lock: see begin.
	done chan struct{}
	out  outcome
	// kept is false when the outcome was transient (the call may be retried for real), in
	// which case the record was dropped and a waiter must run the call itself.
	kept bool
}

// closedDone is the done channel of finished records.
var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func newIdempotency(window time.Duration, maxBytes int64, now func() time.Time) *idempotency {
	return &idempotency{window: window, maxBytes: maxBytes, now: now, records: make(map[string]*idemRecord)}
}

// begin claims key.id for a call with key's payload. It returns owner=true when the caller is
// the first and must call finish; otherwise rec is the record of the first call, and done is
// closed once rec is finished. A reuse of the id with another payload is IDEMPOTENCY_CONFLICT.
func (m *idempotency) begin(key *idemKey) (rec *idemRecord, done <-chan struct{}, owner bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire()
	if rec := m.records[key.id]; rec != nil {
		if rec.key.method != key.method || rec.key.digest != key.digest {
			return nil, nil, false, kvError(kv.ErrorCode_IDEMPOTENCY_CONFLICT,
				"request_id %q was already used for a different request", key.id)
		}
		return rec, rec.done, false, nil
	}
	rec = &idemRecord{key: *key, done: make(chan struct{})}
	rec.key.id = strings.Clone(key.id) // not a view of the request it came in
	rec.cost = recordBytes + int64(len(key.id))
	m.insert(rec)
	return rec, rec.done, true, nil
}

// insert adds rec as the newest record, evicting the oldest to make room; a record that
// cannot fit at all is not kept.
func (m *idempotency) insert(rec *idemRecord) {
	if rec.cost > m.maxBytes {
		m.evicted++
		return
	}
	rec.elem = m.byAge.PushBack(rec)
	m.records[rec.key.id] = rec
	m.bytes += rec.cost
	m.evictOver()
}

// finish records the outcome of the owner's call of n entries (key(i) is entry i's key) and
// releases its waiters. A transient outcome is not remembered: the next call with the same id
// runs for real. The record grows by the entries its outcome lists, which may evict others.
func (m *idempotency) finish(rec *idemRecord, resp any, err error, n int, key func(int) string) {
	var out outcome
	kept := !transient(err)
	if kept {
		out, kept = outcomeOf(resp, err, n, key)
	}
	m.mu.Lock()
	rec.out, rec.kept = out, kept
	done := rec.done
	rec.done = closedDone
	if m.records[rec.key.id] == rec {
		grown := rec.cost + entryBytes*int64(len(out.entries))
		switch {
		case !kept:
			m.drop(rec)
		case grown > m.maxBytes:
			m.drop(rec)
			m.evicted++
		default:
			m.bytes += grown - rec.cost
			rec.cost = grown
			m.expire()
			m.evictOver()
		}
	}
	m.mu.Unlock()
	close(done)
}

// restore adds a finished record recovered with a durable store, unless its window is over.
func (m *idempotency) restore(key idemKey, out outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.now().UnixMilli()-key.createdMs >= m.window.Milliseconds() {
		return
	}
	if old := m.records[key.id]; old != nil {
		m.drop(old)
	}
	rec := &idemRecord{key: key, done: closedDone, out: out, kept: true,
		cost: recordBytes + int64(len(key.id)) + entryBytes*int64(len(out.entries))}
	m.insert(rec)
}

// expire drops records whose window is over; they are oldest first.
func (m *idempotency) expire() {
	nowMs, windowMs := m.now().UnixMilli(), m.window.Milliseconds()
	for e := m.byAge.Front(); e != nil; e = m.byAge.Front() {
		rec := e.Value.(*idemRecord)
		if nowMs-rec.key.createdMs < windowMs {
			return
		}
		m.drop(rec)
	}
}

// evictOver evicts the oldest records, inside their window, while the records are over the
// byte bound.
func (m *idempotency) evictOver() {
	for m.bytes > m.maxBytes {
		m.drop(m.byAge.Front().Value.(*idemRecord))
		m.evicted++
	}
}

func (m *idempotency) drop(rec *idemRecord) {
	m.byAge.Remove(rec.elem)
	delete(m.records, rec.key.id)
	m.bytes -= rec.cost
}

// stats returns the number of records held, their bytes and the evictions so far.
func (m *idempotency) stats() (records int, bytes int64, evicted uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records), m.bytes, m.evicted
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
