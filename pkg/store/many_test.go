package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

// countingJournal passes calls on to the log and counts them.
type countingJournal struct {
	journal
	appends, waits atomic.Int64
}

func (j *countingJournal) Append(rec []byte) (uint64, error) {
	j.appends.Add(1)
	return j.journal.Append(rec)
}

func (j *countingJournal) Wait(ctx context.Context, lsn uint64) error {
	j.waits.Add(1)
	return j.journal.Wait(ctx, lsn)
}

// manyBatches are batches of every kind of answer: applied, failed precondition (atomic and
// best effort), a repeated key, a key a previous batch of the same call wrote.
func manyBatches() []Batch {
	return []Batch{
		{Mode: Atomic, Writes: []Write{put("a", "1"), put("b", "1")}},
		{Mode: Atomic, Writes: []Write{{Key: "c", Value: []byte("1"), ExpectedVersion: 7}}},
		{Mode: BestEffort, Writes: []Write{{Key: "a", Value: []byte("2"), ExpectedVersion: 0}, put("d", "1")}, Tag: []byte("tag")},
		{Mode: Atomic, Writes: []Write{put("e", "1"), put("e", "2")}},
		{Mode: BestEffort, Writes: []Write{{Key: "b", Delete: true, ExpectedVersion: 1}}},
	}
}

// applyAll runs ApplyAll over batches and returns what it filled.
func applyAll(e Engine, batches []Batch) ([][]Result, []Outcome, []error) {
	results := make([][]Result, len(batches))
	for i, b := range batches {
		results[i] = make([]Result, len(b.Writes))
	}
	outs, errs := make([]Outcome, len(batches)), make([]error, len(batches))
	ApplyAll(context.Background(), e, batches, results, outs, errs)
	return results, outs, errs
}

// applyEach answers batches as Apply does, one by one: what ApplyAll must match.
func applyEach(e Engine, batches []Batch) ([][]Result, []Outcome, []error) {
	results := make([][]Result, len(batches))
	outs, errs := make([]Outcome, len(batches)), make([]error, len(batches))
	for i, b := range batches {
		results[i] = make([]Result, len(b.Writes))
		outs[i], errs[i] = e.Apply(context.Background(), b, results[i])
	}
	return results, outs, errs
}

// TestDurableApplyAllWaitsOnce checks that Durable's ApplyAll answers each batch as Apply does
// alone, logs each committed batch and waits once for them all, and that what it acknowledged
// is recovered.
func TestDurableApplyAllWaitsOnce(t *testing.T) {
	dir := t.TempDir()
	d := openDurable(t, dir, nil, nil)
	j := &countingJournal{journal: d.log}
	d.journal = j
	ref, err := NewMemory(Options{Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	gotRes, gotOuts, gotErrs := applyAll(d, manyBatches())
	wantRes, wantOuts, wantErrs := applyEach(ref, manyBatches())
	if !reflect.DeepEqual(gotRes, wantRes) || !reflect.DeepEqual(gotOuts, wantOuts) || fmt.Sprint(gotErrs) != fmt.Sprint(wantErrs) {
		t.Fatalf("ApplyAll = %v %v %v; want as Apply: %v %v %v", gotRes, gotOuts, gotErrs, wantRes, wantOuts, wantErrs)
	}
	if a, w := j.appends.Load(), j.waits.Load(); a != 3 || w != 1 {
		t.Errorf("%d appends and %d waits; want 3 (one per committed batch) and 1", a, w)
	}
	d, _ = reopen(t, d, dir)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDurableApplyAllFailures checks that a batch the log refused is ErrJournal and nothing
// applied, and that when the wait fails, each committed batch, and only those, is ErrNotDurable.
func TestDurableApplyAllFailures(t *testing.T) {
	d := openDurable(t, t.TempDir(), nil, nil)
	defer d.Close()
	d.journal = unconfirmedJournal{journal: d.log, err: context.DeadlineExceeded}
	_, outs, errs := applyAll(d, manyBatches())
	for i, err := range errs {
		committed := outs[i].Revision != 0
		if committed != errors.Is(err, ErrNotDurable) || (!committed && err != nil && !errors.Is(err, ErrDuplicateKey)) {
			t.Errorf("batch %d: outcome %v, err %v; want ErrNotDurable exactly when committed", i, outs[i], err)
		}
	}
	d.journal = failingJournal{errors.New("no space left on device")}
	before := d.Stats()
	_, outs, errs = applyAll(d, []Batch{{Mode: Atomic, Writes: []Write{put("x", "1")}}, {Mode: BestEffort, Writes: []Write{put("y", "1")}}})
	for i, err := range errs {
		if !errors.Is(err, ErrJournal) || outs[i] != (Outcome{}) {
			t.Errorf("batch %d: %v, %v; want ErrJournal and nothing applied", i, outs[i], err)
		}
	}
	if d.Stats() != before {
		t.Errorf("stats %+v after refused batches; want %+v", d.Stats(), before)
	}
}

// waitingMemory is a Memory that says it waits for durability and panics on the key "boom", so
// that ApplyAll's default applies side by side.
type waitingMemory struct{ *Memory }

func (waitingMemory) WaitsForDurability() bool { return true }

func (m waitingMemory) Apply(ctx context.Context, b Batch, results []Result) (Outcome, error) {
	if b.Writes[0].Key == "boom" {
		panic("boom")
	}
	return m.Memory.Apply(ctx, b, results)
}

// TestApplyAllDefault checks ApplyAll on engines that are not ManyAppliers: in turn (Memory) and
// side by side (an engine that waits), answering as Apply does, and a panic in one Apply raised
// on the caller's goroutine.
func TestApplyAllDefault(t *testing.T) {
	independent := []Batch{
		{Mode: Atomic, Writes: []Write{put("a", "1")}},
		{Mode: Atomic, Writes: []Write{put("b", "1"), put("b", "2")}},
		{Mode: BestEffort, Writes: []Write{{Key: "c", Delete: true, ExpectedVersion: AnyVersion}}},
	}
	for _, waits := range []bool{false, true} {
		m, err := NewMemory(Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var e Engine = m
		if waits {
			e = waitingMemory{m}
		}
		res, outs, errs := applyAll(e, independent)
		if outs[0].Applied != 1 || !errors.Is(errs[1], ErrDuplicateKey) || res[2][0].Code != NotFound || errs[0] != nil || errs[2] != nil {
			t.Errorf("waits %v: ApplyAll = %v %v %v", waits, res, outs, errs)
		}
		if waits {
			func() {
				defer func() {
					if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "boom") {
						t.Errorf("recovered %v; want the panic of the call", p)
					}
				}()
				applyAll(e, []Batch{independent[0], {Mode: Atomic, Writes: []Write{put("boom", "1")}}})
			}()
		}
	}
}
