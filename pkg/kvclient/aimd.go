package kvclient

import "time"

// Constants of the target-size controller (see aimd).
const (
	growStep      = 1   // added to the target after a clean, fast call
	shrinkFactor  = 0.5 // the target is multiplied by it after a refusal, a slow call or no answer
	fallbackAfter = 3   // zero-applied refusals in a row that switch to one key per call (see Batcher)
)

// aimd is the Batcher's target batch size: additive increase, multiplicative decrease,
// bounded by the server's suggestion, with a fallback to single keys under sustained
// refusal. It is pure bookkeeping (no clock, no locking): the Batcher feeds it every call's
// outcome under its lock.
//
//   - onSuccess (answered, nothing refused): size+growStep, or size×shrinkFactor if slower
//     than the target latency; in fallback, nothing changes until the suggestion shows
//     tokens (suggested_batch ≠ 1), which ends the fallback.
//   - onRefused (some entry RESOURCE_EXHAUSTED): size×shrinkFactor. If nothing was applied
//     and the batch was cut after the last counted refusal came back, the refusal streak
//     grows; at fallbackAfter the fallback starts (size 1). Applying anything ends the streak.
//   - onDropped (no answer, or a request too large as a whole): size×shrinkFactor.
//
// After each, the size is capped by the outcome's suggested_batch (when there is one) and
// kept within [1, max], and is 1 in fallback.
type aimd struct {
	cur           int
	max           int
	targetLatency time.Duration // 0: no latency rule

	updates  uint64 // outcomes taken into account: the epoch a batch is stamped with when cut
	streak   int    // zero-applied refusals in a row
	counted  uint64 // the epoch after the last refusal the streak counted
	fallback bool
}

// newAIMD returns a controller starting at initial, bounded by [1, ceiling].
func newAIMD(initial, ceiling int, targetLatency time.Duration) aimd {
	a := aimd{cur: initial, max: max(ceiling, 1), targetLatency: targetLatency}
	a.bound(0)
	return a
}

// size is the target size: the most entries the next batch may carry.
func (a *aimd) size() int { return a.cur }

// epoch counts the outcomes taken into account so far; a batch remembers it when cut.
func (a *aimd) epoch() uint64 { return a.updates }

// inFallback reports whether the Batcher is to send one key per call.
func (a *aimd) inFallback() bool { return a.fallback }

// backoffAttempt is the attempt the Batcher's hold in fallback backs off by (see backoff):
// the zero-applied refusals in a row beyond the fallbackAfter that started the fallback, 0
// for that one. It is below 0, which backoff takes as 0, after a clean answer that showed no
// tokens to spare (suggested_batch 1) has reset the streak without ending the fallback.
func (a *aimd) backoffAttempt() int { return a.streak - fallbackAfter }

// onSuccess takes in a call answered with no entry refused, after latency, with the
// response's suggested_batch (0 if none).
func (a *aimd) onSuccess(latency time.Duration, suggested int32) {
	a.updates++
	a.streak = 0
	if a.fallback {
		if suggested == 1 { // still no tokens to spare
			return
		}
		a.fallback = false
	}
	if a.targetLatency > 0 && latency > a.targetLatency {
		a.shrink()
	} else {
		a.cur += growStep
	}
	a.bound(suggested)
}

// onRefused takes in a call with entries refused RESOURCE_EXHAUSTED, of which applied were
// written; sentAt is the epoch its batch was cut at, suggested its suggested_batch (0 if
// none).
func (a *aimd) onRefused(suggested int32, applied int, sentAt uint64) {
	a.updates++
	switch {
	case applied > 0:
		a.streak = 0
	case sentAt >= a.counted: // not an echo of a refusal already counted
		a.streak++
		a.counted = a.updates
	}
	if a.streak >= fallbackAfter {
		a.fallback = true
	}
	a.shrink()
	a.bound(suggested)
}

// onDropped takes in a call that got no answer, or was refused as too large as a whole.
func (a *aimd) onDropped() {
	a.updates++
	a.shrink()
	a.bound(0)
}

func (a *aimd) shrink() { a.cur = int(float64(a.cur) * shrinkFactor) }

// bound caps the size by suggested (when positive) and keeps it within [1, max], and at 1 in
// fallback.
func (a *aimd) bound(suggested int32) {
	if suggested > 0 {
		a.cur = min(a.cur, int(suggested))
	}
	a.cur = max(1, min(a.cur, a.max))
	if a.fallback {
		a.cur = 1
	}
}
