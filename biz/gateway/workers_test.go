package gateway

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// waitIdle waits until n workers of w wait for work (one of ns, when several are given).
func waitIdle(t *testing.T, w *workers, ns ...int32) {
	t.Helper()
	for deadline := time.Now().Add(waitBound); !slices.Contains(ns, w.idle.Load()); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers wait, want %v", w.idle.Load(), ns)
		}
	}
}

// TestWorkers checks that a call goes to a waiting worker when there is one, that no more
// than maxIdleWorkers wait, and that stop ends them (leakcheck, at the end, checks that no
// goroutine is left). A worker counts itself waiting a moment before it can take a call, so a
// call made in that moment runs on a new goroutine instead: both outcomes are allowed.
func TestWorkers(t *testing.T) {
	w := newWorkers()
	release, ran := make(chan struct{}), make(chan struct{})
	const busy = maxIdleWorkers + 5
	for range busy {
		w.run(func() { <-release; ran <- struct{}{} })
	}
	close(release)
	for range busy {
		<-ran
	}
	waitIdle(t, w, maxIdleWorkers)
	block := make(chan struct{})
	w.run(func() { <-block; ran <- struct{}{} })
	waitIdle(t, w, maxIdleWorkers-1, maxIdleWorkers) // a waiting worker took it, or a new one
	close(block)
	<-ran
	waitIdle(t, w, maxIdleWorkers)
	w.stop()
	waitIdle(t, w, 0)
	w.run(func() { ran <- struct{}{} }) // still runs after stop
	<-ran
}
