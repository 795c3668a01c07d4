package store

import (
	"context"
	"errors"
	"fmt"
)

// Mode selects how Apply treats a batch in which some writes fail their precondition.
type Mode uint8

const (
	// Atomic applies every write or none; applied keys share one revision.
	Atomic Mode = iota
	// BestEffort applies each write whose precondition holds and reports the rest.
	BestEffort
)

// String returns the mode's lower-case name, as used in metric labels and logs.
func (m Mode) String() string {
	switch m {
	case Atomic:
		return "atomic"
	case BestEffort:
		return "best_effort"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Code is the outcome of one write.
type Code uint8

const (
	// OK: the write applied (or, in a failed Atomic batch, would have).
	OK Code = iota
	// NotFound: a delete named a key that is absent or expired.
	NotFound
	// VersionMismatch: ExpectedVersion > 0 did not match the key's current version
	// (0 for an absent key).
	VersionMismatch
	// AlreadyExists: ExpectedVersion was 0 (create-only) but the key exists.
	AlreadyExists
)

// String returns the code's name as the API spells it.
func (c Code) String() string {
	switch c {
	case OK:
		return "OK"
	case NotFound:
		return "NOT_FOUND"
	case VersionMismatch:
		return "VERSION_MISMATCH"
	case AlreadyExists:
		return "ALREADY_EXISTS"
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// AnyVersion as ExpectedVersion makes a write unconditional.
const AnyVersion int64 = -1

// Write is one key to put or delete.
type Write struct {
	Key string
	// Value is the new value of a put; Apply copies it.
	Value []byte
	// Delete makes this write remove Key; Value and ExpiresAtMs are ignored.
	Delete bool
	// ExpectedVersion is the precondition: AnyVersion = none, 0 = the key must be absent,
	// n > 0 = the key's current version must be n. An expired key counts as absent.
	ExpectedVersion int64
	// ExpiresAtMs is the Unix time in milliseconds at which the key expires; 0 = never.
	ExpiresAtMs int64
}

// Result is the outcome of one write, at the same index as the write.
type Result struct {
	Code Code
	// Version is the key's new version when the write applied; otherwise its current
	// version (0 when absent).
	Version int64
	// Created is true when a put applied to a key that was absent.
	Created bool
}

// String renders the result as the semantics scripts (testdata/semantics) and logs show it:
// "OK version=3 created", "VERSION_MISMATCH version=2".
func (r Result) String() string {
	s := fmt.Sprintf("%s version=%d", r.Code, r.Version)
	if r.Created {
		s += " created"
	}
	return s
}

// Outcome summarises an Apply.
type Outcome struct {
	// Revision is the revision of the write, shared by every applied key; 0 when nothing
	// applied.
	Revision int64
	// Applied counts the writes that took effect. An Atomic batch applies all or none.
	Applied int
	// Replayed is set when every write was answered from the records of Batch.Call (an
	// earlier batch of the same call wrote them): the batch wrote nothing.
	Replayed bool
}

// String renders the outcome as the semantics scripts show it: "rev=3 applied=2".
func (o Outcome) String() string { return fmt.Sprintf("rev=%d applied=%d", o.Revision, o.Applied) }

// Item is the state of one key as read by GetAll.
type Item struct {
	// Value is shared with the store: the caller must not modify it.
	Value       []byte
	Version     int64
	ExpiresAtMs int64
	Found       bool
}

// String renders the item as the semantics scripts show it: "absent", or the value quoted, its
// version and, when it has one, its expiry.
func (it Item) String() string {
	switch {
	case !it.Found:
		return "absent"
	case it.ExpiresAtMs != 0:
		return fmt.Sprintf("%q version=%d expires=%d", it.Value, it.Version, it.ExpiresAtMs)
	}
	return fmt.Sprintf("%q version=%d", it.Value, it.Version)
}

// Stats are gauges of an engine.
type Stats struct {
	// Keys counts resident keys, including expired ones the sweeper has not freed yet.
	Keys int64
	// Revision is the revision of the latest write.
	Revision int64
	// Bytes is what the resident keys count against the memory quota, MaxBytes the quota (0
	// for none), QuotaRefusals the batches refused for it so far.
	Bytes, MaxBytes int64
	QuotaRefusals   uint64
}

// ErrDuplicateKey is what a *DuplicateKeyError matches with errors.Is.
var ErrDuplicateKey = errors.New("store: key appears more than once in the batch")

// DuplicateKeyError is returned by Apply when a batch names a key more than once.
type DuplicateKeyError struct{ Key string }

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("store: key %q appears more than once in the batch", e.Key)
}

// Is makes errors.Is(err, ErrDuplicateKey) hold.
func (e *DuplicateKeyError) Is(target error) bool { return target == ErrDuplicateKey }

// ErrCrossSlot is what a *CrossSlotError matches with errors.Is.
var ErrCrossSlot = errors.New("store: atomic batch spans hash slots")

// CrossSlotError is returned by Apply, with nothing applied, by an engine that partitions keys
// into hash slots (Redis Cluster) when an Atomic batch names keys of two slots: such an engine
// applies atomically only within one slot. First and Second are two of the batch's keys in
// different slots.
type CrossSlotError struct {
	First, Second         string
	FirstSlot, SecondSlot int
}

func (e *CrossSlotError) Error() string {
	return fmt.Sprintf("store: an ATOMIC write must keep all its keys in one hash slot, but key %q is in slot %d "+
		"and key %q in slot %d; keys that share a hash tag share a slot (the part between the first '{' and the "+
		"next '}': \"{user42}:name\" and \"{user42}:email\" do), or write them BEST_EFFORT",
		e.First, e.FirstSlot, e.Second, e.SecondSlot)
}

// Is makes errors.Is(err, ErrCrossSlot) hold.
func (e *CrossSlotError) Is(target error) bool { return target == ErrCrossSlot }

// ErrNotDurable is returned (wrapped with the cause) by Apply when a write was applied in
// memory but could not be confirmed durable before the caller's context ended or while the
// journal was failing: its outcome is unknown to the caller (it becomes durable once the
// journal recovers, unless the process dies first).
var ErrNotDurable = errors.New("store: write not confirmed durable")

// ErrJournal is returned (wrapped with the cause) by Apply when the journal refuses new records
// (disk full, I/O error): nothing was applied, and writes resume once the journal recovers.
var ErrJournal = errors.New("store: journal unavailable")

// ErrRefused is returned (wrapped with the cause) by Apply or GetAll when the engine's backend
// refused the call before carrying it out (a Redis Cluster that is down, out of memory, still
// loading or failing over): nothing was applied, and calls succeed again once it recovers.
var ErrRefused = errors.New("store: the engine refused the call")

// Batch is one write call.
type Batch struct {
	Mode   Mode
	Writes []Write
	// Tag, when set, is recorded with the batch in the journal and handed back at recovery
	// with the batch's results (see Options.Recovered): the service tags writes that carry a
	// request_id, so their responses survive a restart.
	Tag []byte
	// Call, when set, names the idempotent call the batch belongs to. An engine that several
	// processes share (the Redis Cluster engine) records each write's outcome under it, with
	// the write, and answers a later batch of the same call from the record instead of
	// writing again (Outcome.Replayed), whichever process it reaches; a record of the same
	// request_id with another payload fails Apply with ErrRequestConflict. Engines of one
	// process (Memory, Durable) ignore it: the service's own records cover them.
	Call *Call
}

// Call names an idempotent write call for Batch.Call.
type Call struct {
	// ID is the call's request_id.
	ID string
	// Digest identifies the call's method and payload: a record of ID made by a call with
	// another digest is a conflict.
	Digest [32]byte
	// Offset is the index in the call of the batch's first write (a call that admission
	// splits into several batches): a record remembers each write by its index in the call.
	Offset int
	// ExpiresAtMs (Unix ms) is the end of the idempotency window, after which the record may
	// be forgotten.
	ExpiresAtMs int64
}

// ErrRequestConflict is returned (wrapped) by Apply when Batch.Call's request_id was recorded
// for a call with another payload: nothing of the batch was written in the slot that holds
// the record.
var ErrRequestConflict = errors.New("store: the request_id was already used for a different request")

// Engine is what the service needs of a key-value engine, and all it may assume: multi-key
// writes and consistent multi-key reads, under the semantics of Apply and GetAll. Memory and
// Durable are engines; an engine of another family (one over a Redis Cluster, say) stands in
// by implementing these methods, nothing more.
type Engine interface {
	// Apply performs b's writes under its mode and fills results (len(results) must equal
	// len(b.Writes)). Keys must be distinct: a repeated key fails the whole call with a
	// *DuplicateKeyError and nothing applied. A batch that would cross the engine's memory quota
	// fails with a *QuotaError and nothing applied. When an Atomic batch fails, Outcome is zero
	// and the results with a Code other than OK name the failing keys. An engine that keeps
	// writes beyond the process (WaitsForDurability) returns once the write is durable:
	// ErrNotDurable when that cannot be confirmed, ErrJournal when it refused the write.
	Apply(ctx context.Context, b Batch, results []Result) (Outcome, error)
	// GetAll reads keys into items (len(items) must equal len(keys)) as of one revision,
	// which it returns: no reader sees part of a write. A durable engine returns only once
	// every write up to that revision is durable (while it is healthy), so nothing it shows can
	// be lost.
	GetAll(ctx context.Context, keys []string, items []Item) (revision int64, err error)
	// Scan returns one page of the keys that start with req.Prefix, from req.Cursor on, in an
	// order of the engine's that writes do not change: every key present for the whole scan is
	// returned exactly once, keys written or deleted meanwhile may or may not be, and an expired
	// key never is. Items are not one snapshot: each is its key's state at some moment of the
	// call. A durable engine returns only once the items are durable, as GetAll does.
	Scan(ctx context.Context, req ScanRequest) (ScanPage, error)
	// WaitsForDurability reports whether Apply waits for durability (an fsync, a replica's
	// acknowledgement) before it returns. A caller with many independent batches at once does
	// better to apply them side by side then, so that they share the wait.
	WaitsForDurability() bool
	// Stats returns the engine's gauges.
	Stats() Stats
	// Close releases the engine's background work.
	Close() error
}

// FirstRepeat returns the key whose repeat comes first in writes: the key every engine names
// when it refuses a batch that holds a key twice, and the service names when it refuses one
// before admission.
func FirstRepeat(writes []Write) (string, bool) {
	seen := make(map[string]struct{}, len(writes))
	for _, w := range writes {
		if _, ok := seen[w.Key]; ok {
			return w.Key, true
		}
		seen[w.Key] = struct{}{}
	}
	return "", false
}
