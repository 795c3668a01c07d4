package store

import (
	"errors"
	"fmt"
)

// The store's bytes are what its live keys cost: each resident key counts its key and value
// bytes plus KeyOverhead. Options.MaxBytes bounds them: a batch that would raise them over the
// bound is refused whole, before anything is applied or logged, with a *QuotaError. A batch
// that does not raise them (deletes, overwrites with values no longer than before) always
// passes, so a store over its quota (recovered so, or with the quota lowered) can still be
// read and shrunk. Expiry frees a key's bytes when the sweeper removes it.

// KeyOverhead is what each resident key costs beyond its key and value bytes: its entry header
// in the arena (24 bytes) and its slot in the hash index (16 bytes at a load between 3/8 and
// 3/4: up to 43 bytes), rounded up.
const KeyOverhead = 64

// ErrQuota is what a *QuotaError matches with errors.Is.
var ErrQuota = errors.New("store: over its memory quota")

// QuotaError is returned by Apply when the batch would raise the store's bytes over
// Options.MaxBytes. Nothing was applied.
type QuotaError struct {
	// Grow is how many bytes the batch would add; Used and Max are the store's bytes and its
	// quota when it was refused.
	Grow, Used, Max int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("store: a write of %d more bytes would cross the memory quota: %d of %d bytes in use", e.Grow, e.Used, e.Max)
}

// Is makes errors.Is(err, ErrQuota) hold.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

// cost is what a resident entry of this header counts against the quota.
func (e entryHeader) cost() int64 { return int64(e.keyLen) + int64(e.valLen) + KeyOverhead }

// cost is what w leaves resident once applied (a delete leaves nothing).
func (w *Write) cost() int64 {
	if w.Delete {
		return 0
	}
	return int64(len(w.Key)) + int64(len(w.Value)) + KeyOverhead
}

// growth is how many bytes w adds when it replaces the entry found at l (none: l not found).
func (sh *shard) growth(w *Write, l loc) int64 {
	g := w.cost()
	if l.found() {
		g -= sh.header(l.ref).cost()
	}
	return g
}

// reserve accounts for a batch that changes the store's bytes by grow, unless that would raise
// them over the quota: then it counts the refusal and returns a *QuotaError. Concurrent batches
// reserve atomically, so together they cannot cross the quota either.
func (s *Memory) reserve(grow int64) error {
	switch {
	case grow == 0: // an overwrite of the same size: the shared counter is left alone
		return nil
	case grow < 0 || s.maxBytes == 0:
		s.used.Add(grow)
		return nil
	}
	for {
		used := s.used.Load()
		if used+grow > s.maxBytes {
			s.quotaRefusals.Add(1)
			return &QuotaError{Grow: grow, Used: used, Max: s.maxBytes}
		}
		if s.used.CompareAndSwap(used, used+grow) {
			return nil
		}
	}
}
