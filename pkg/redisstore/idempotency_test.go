package redisstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/store"
)

// newCall names an idempotent call of payload whose window ends in a minute.
func newCall(t *testing.T, payload string) *store.Call {
	return &store.Call{ID: fresh(t) + "req", Digest: sha256.Sum256([]byte(payload)),
		ExpiresAtMs: time.Now().Add(time.Minute).UnixMilli()}
}

// applyCall applies writes as a batch of call and fails the test on an error.
func applyCall(t *testing.T, e *Engine, mode store.Mode, call *store.Call, writes ...store.Write) (store.Outcome, []store.Result) {
	t.Helper()
	results := make([]store.Result, len(writes))
	out, err := e.Apply(context.Background(), store.Batch{Mode: mode, Writes: writes, Call: call}, results)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out, results
}

// A call recorded through one engine (one putallkv process) is replayed through another: same
// results, nothing written again, Replayed set.
func TestRecordReplaysThroughAnotherProcess(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		a, b := openEngine(t, Options{ReplicasAck: 1}), openEngine(t, Options{ReplicasAck: 1})
		keys := keysInSlots(fresh(t), 3)
		call := newCall(t, "p")
		writes := []store.Write{put(keys[0], "0", 0), put(keys[1], "1", 5), put(keys[2], "2", store.AnyVersion)}
		first, res1 := applyCall(t, a, store.BestEffort, call, writes...)
		if first.Replayed || first.Applied != 2 || res1[1].Code != store.VersionMismatch {
			t.Fatalf("first call: %v %v", first, res1)
		}
		_, before := getAll(t, a, keys...)
		again, res2 := applyCall(t, b, store.BestEffort, call, writes...)
		if !again.Replayed || again.Applied != first.Applied || again.Revision != first.Revision {
			t.Fatalf("retry through another process: %v; want the first outcome %v, replayed", again, first)
		}
		for i := range res1 {
			if res1[i] != res2[i] {
				t.Fatalf("writes[%d]: retry %v, first %v", i, res2[i], res1[i])
			}
		}
		if _, after := getAll(t, b, keys...); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("the replay wrote: before %v, after %v", before, after)
		}
		if !b.WaitsForDurability() || b.Unrecorded() != 0 {
			t.Fatalf("unrecorded writes: %d", b.Unrecorded())
		}
	})
}

// The same call run by several processes at once applies once: one gets it applied, the others
// the replay, every one the same version.
func TestConcurrentRetriesApplyOnce(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		const n = 6
		keys := keysInSlots(fresh(t), 1)
		call := newCall(t, "c")
		engines := make([]*Engine, n)
		for i := range engines {
			engines[i] = openEngine(t, Options{ReplicasAck: 1})
		}
		outs := make([]store.Outcome, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				results := make([]store.Result, 1)
				outs[i], errs[i] = engines[i].Apply(context.Background(), store.Batch{Mode: store.Atomic,
					Writes: []store.Write{put(keys[0], "v", store.AnyVersion)}, Call: call}, results)
			})
		}
		wg.Wait()
		applied := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("process %d: %v", i, errs[i])
			}
			if !outs[i].Replayed {
				applied++
			}
			if outs[i].Revision != outs[0].Revision || outs[i].Applied != 1 {
				t.Fatalf("process %d: %v; process 0: %v", i, outs[i], outs[0])
			}
		}
		if applied != 1 {
			t.Fatalf("%d processes applied the call; want 1", applied)
		}
		if rev, items := getAll(t, engines[0], keys[0]); items[0].Version != outs[0].Revision || rev != outs[0].Revision {
			t.Fatalf("the key is at version %d (slot revision %d); want %d, written once", items[0].Version, rev, outs[0].Revision)
		}
	})
}

// A request_id reused for another payload is refused in the slot holding its record, writing
// nothing; a failed ATOMIC call is recorded too, and replayed as it failed even once its
// precondition would hold.
func TestRecordConflictAndRecordedFailure(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		tag := "{" + fresh(t) + "}"
		x, y := tag+"x", tag+"y"
		apply(t, e, store.Atomic, put(x, "old", 0))
		call := newCall(t, "create x and y")
		writes := []store.Write{put(x, "1", 0), put(y, "1", 0)}
		out, res := applyCall(t, e, store.Atomic, call, writes...)
		if out.Applied != 0 || res[0].Code != store.AlreadyExists || res[1].Code != store.OK {
			t.Fatalf("first call: %v %v; want x ALREADY_EXISTS", out, res)
		}
		apply(t, e, store.Atomic, store.Write{Key: x, Delete: true, ExpectedVersion: store.AnyVersion})
		out, res = applyCall(t, e, store.Atomic, call, writes...)
		if out.Applied != 0 || res[0].Code != store.AlreadyExists {
			t.Fatalf("retry: %v %v; want the recorded ALREADY_EXISTS", out, res)
		}

		other := *call
		other.Digest = sha256.Sum256([]byte("another payload"))
		results := make([]store.Result, 1)
		_, err := e.Apply(context.Background(), store.Batch{Mode: store.Atomic, Writes: []store.Write{put(y, "2", store.AnyVersion)},
			Call: &other}, results)
		if !errors.Is(err, store.ErrRequestConflict) {
			t.Fatalf("reused request_id: %v; want ErrRequestConflict", err)
		}
		if _, items := getAll(t, e, x, y); items[0].Found || items[1].Found {
			t.Fatalf("a refused or failed call wrote: %v", items)
		}
	})
}

// A call spanning slots whose process dies between slots (here: only the first slot's script
// ran) leaves that slot's writes applied and recorded and the other slot's not written; the
// retry replays the first and applies the rest, not marked replayed; a third run replays all.
func TestCrashBetweenSlotsCompletedByRetry(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		keys := keysInSlots(fresh(t), 2)
		call := newCall(t, "two slots")
		writes := []store.Write{put(keys[0], "0", 0), put(keys[1], "1", 0)}
		b := store.Batch{Mode: store.BestEffort, Writes: writes, Call: call}
		firstSlot := Slot(dataKey(writes[0].Key))
		results := make([]store.Result, 2)
		outs, errs := make([]store.Outcome, 1), make([]error, 1)
		e.applyAll(context.Background(), []store.Batch{b}, [][]store.Result{results}, outs, errs, func(g group) bool { return g.slot == firstSlot })
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		died := results[0]
		if _, items := getAll(t, e, keys...); !items[0].Found || items[1].Found {
			t.Fatalf("after the first slot: %v; want keys[0] only", items)
		}

		out, res := applyCall(t, e, store.BestEffort, call, writes...)
		if out.Replayed || out.Applied != 2 || res[0] != died || res[1].Code != store.OK || !res[1].Created {
			t.Fatalf("retry: %v %v; want keys[0] replayed at %v, keys[1] applied", out, res, died)
		}
		again, res2 := applyCall(t, e, store.BestEffort, call, writes...)
		if !again.Replayed || res2[0] != res[0] || res2[1] != res[1] {
			t.Fatalf("third run: %v %v; want a replay of %v", again, res2, res)
		}
	})
}

// A call admission split into batches is recorded by each write's index in the call, so a retry
// split differently (here: at once) is replayed whole.
func TestRecordByIndexInCall(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		tag := "{" + fresh(t) + "}"
		writes := []store.Write{put(tag+"a", "a", 0), put(tag+"b", "b", 0), put(tag+"c", "c", 0)}
		call := newCall(t, "split")
		_, r1 := applyCall(t, e, store.BestEffort, call, writes[:2]...)
		second := *call
		second.Offset = 2
		_, r2 := applyCall(t, e, store.BestEffort, &second, writes[2:]...)
		out, res := applyCall(t, e, store.BestEffort, call, writes...)
		if !out.Replayed || out.Revision != 0 || res[0] != r1[0] || res[1] != r1[1] || res[2] != r2[0] {
			t.Fatalf("retry at once: %v %v; want a replay of %v %v", out, res, r1, r2)
		}
	})
}

// A record expires with the call's idempotency window and holds at most MaxRecordBytes: the
// writes past the bound apply unrecorded (counted), and a retry applies them again.
func TestRecordBounds(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1, MaxRecordBytes: sha256.Size + 2*recordEntryBytes})
		tag := "{" + fresh(t) + "}"
		call := newCall(t, "bounds")
		ctx := context.Background()
		c := e.client
		applyCall(t, e, store.BestEffort, call, put(tag+"a", "a", store.AnyVersion))
		rk := recordKey(Slot(tag), call.ID)
		at, err := c.Do(ctx, c.B().Pexpiretime().Key(rk).Build()).AsInt64()
		if err != nil || at != call.ExpiresAtMs {
			t.Fatalf("the record expires at %d (%v); want the window's end %d", at, err, call.ExpiresAtMs)
		}
		size, err := c.Do(ctx, c.B().Strlen().Key(rk).Build()).AsInt64()
		if err != nil || size != sha256.Size+recordEntryBytes {
			t.Fatalf("a record of one write holds %d bytes (%v); want %d", size, err, sha256.Size+recordEntryBytes)
		}

		big := newCall(t, "too big")
		writes := []store.Write{put(tag+"x", "x", store.AnyVersion), put(tag+"y", "y", store.AnyVersion), put(tag+"z", "z", store.AnyVersion)}
		_, r1 := applyCall(t, e, store.BestEffort, big, writes...)
		if e.Unrecorded() != 3 {
			t.Fatalf("unrecorded writes: %d; want 3", e.Unrecorded())
		}
		out, r2 := applyCall(t, e, store.BestEffort, big, writes...)
		if out.Replayed || r2[0].Version <= r1[0].Version {
			t.Fatalf("retry of an unrecorded call: %v %v; want it applied again after %v", out, r2, r1)
		}
	})
}

// A write applied but not confirmed (outcome unknown) is recorded with it: its retry, through
// another process, is replayed rather than applied again, and acknowledged once a replica
// confirms it (the replay's own write carries the WAIT past the record).
func TestUnconfirmedWriteReplayedOnRetry(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		unconfirmed := openEngine(t, Options{ReplicasAck: 2, AckTimeout: 50 * time.Millisecond})
		k := fresh(t) + "k"
		call := newCall(t, "unconfirmed")
		results := make([]store.Result, 1)
		_, err := unconfirmed.Apply(context.Background(), store.Batch{Mode: store.Atomic,
			Writes: []store.Write{put(k, "v", 0)}, Call: call}, results)
		if !errors.Is(err, store.ErrNotDurable) {
			t.Fatalf("Apply waiting for 2 replicas of 1: %v; want ErrNotDurable", err)
		}
		_, items := getAll(t, unconfirmed, k)
		out, res := applyCall(t, openEngine(t, Options{ReplicasAck: 1}), store.Atomic, call, put(k, "v", 0))
		if !out.Replayed || res[0].Code != store.OK || res[0].Version != items[0].Version {
			t.Fatalf("retry: %v %v; want a replay of the write at version %d (a create-only write applied twice would fail)",
				out, res, items[0].Version)
		}
	})
}
