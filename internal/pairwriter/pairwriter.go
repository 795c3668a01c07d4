// Package pairwriter keeps rewriting pairs of keys while a test takes a consistent cut of a
// store (a snapshot scan, an export): each write sets both keys of one pair to one value in one
// atomic call, so a cut that shows the two keys of a pair with different values saw half a
// write.
package pairwriter

import (
	"context"
	"sync"
	"testing"
)

// Write sets both keys of pair to value in one atomic call.
type Write func(ctx context.Context, pair, value int) error

// Start writes every one of pairs pairs at value 0, then rewrites them on a goroutine (pair
// v%pairs at value v, v counting up) until the returned stop is called; stop returns once the
// writer has. A failed write fails t.
func Start(t testing.TB, pairs int, write Write) (stop func()) {
	t.Helper()
	for i := range pairs {
		if err := write(context.Background(), i, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for v := 1; ctx.Err() == nil; v++ {
			if err := write(ctx, v%pairs, v); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
