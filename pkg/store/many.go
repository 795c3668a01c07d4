package store

import (
	"context"
	"fmt"
	"sync"
)

// ManyApplier is an Engine that applies several independent batches at once more cheaply than
// one Apply each: Durable logs them one after the other and waits once for the fsync that makes
// them all durable. ApplyAll gives every engine the method, through this interface or a default.
type ManyApplier interface {
	// ApplyAll applies each of batches as Apply would alone, into results[i] (len(results[i])
	// must equal len(batches[i].Writes)), outs[i] and errs[i]. The batches are independent: each
	// succeeds or fails on its own.
	ApplyAll(ctx context.Context, batches []Batch, results [][]Result, outs []Outcome, errs []error)
}

// ApplyAll applies each of batches as e.Apply would alone, into results[i], outs[i] and errs[i]
// (all four of one length). An engine that is a ManyApplier does it its own way; otherwise an
// engine that WaitsForDurability applies them side by side, so that they share the wait, and
// any other engine applies them in turn, which costs less (no goroutine to start). A panic in
// Apply is raised again on the caller's goroutine.
func ApplyAll(ctx context.Context, e Engine, batches []Batch, results [][]Result, outs []Outcome, errs []error) {
	if n := len(batches); len(results) != n || len(outs) != n || len(errs) != n {
		panic(fmt.Sprintf("store: ApplyAll of %d batches with %d results, %d outcomes, %d errors", n, len(results), len(outs), len(errs)))
	}
	if m, ok := e.(ManyApplier); ok {
		m.ApplyAll(ctx, batches, results, outs, errs)
		return
	}
	apply := func(i int) { outs[i], errs[i] = e.Apply(ctx, batches[i], results[i]) }
	if !e.WaitsForDurability() {
		for i := range batches {
			apply(i)
		}
		return
	}
	panics := make([]any, len(batches))
	guarded := func(i int) {
		defer func() { panics[i] = recover() }()
		apply(i)
	}
	var wg sync.WaitGroup
	for i := 1; i < len(batches); i++ {
		wg.Go(func() { guarded(i) })
	}
	if len(batches) > 0 {
		guarded(0) // once the others have started, so that all of them wait together
	}
	wg.Wait()
	for _, p := range panics {
		if p != nil {
			panic(p) // on the caller's goroutine, where it can be recovered
		}
	}
}

// ApplyAll implements ManyApplier: it applies the batches in turn, each logged as it commits,
// holding the log's writer back meanwhile (wal.Log.Hold), and then waits once, for the last one
// logged: the log makes records durable in order, so the batches share one fsync (or the few
// that a full segment takes) instead of waiting one by one, and a writer that wakes while they
// are being logged does not split them between two fsyncs. A batch is acknowledged (errs[i]
// nil) only once durable, as with Apply.
func (d *Durable) ApplyAll(ctx context.Context, batches []Batch, results [][]Result, outs []Outcome, errs []error) {
	release := d.journal.Hold()
	defer release()
	var last uint64
	for i, b := range batches {
		var lsn uint64
		outs[i], lsn, errs[i] = d.mem.apply(b, results[i])
		last = max(last, lsn)
	}
	release()
	if last == 0 {
		return
	}
	if err := d.waitDurable(ctx, last); err != nil {
		for i := range batches {
			if errs[i] == nil && outs[i].Revision != 0 { // committed, so not confirmed durable
				errs[i] = err
			}
		}
	}
}

var _ ManyApplier = (*Durable)(nil)
