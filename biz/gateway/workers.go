package gateway

import "sync/atomic"

// maxIdleWorkers bounds the goroutines that wait for a service call between calls; more end
// once their call returns.
const maxIdleWorkers = 128

// workers run the service calls (see await) on goroutines kept between calls. A fresh
// goroutine starts on the smallest stack and grows it, copying it each time, on its way down
// into the store (7 % of the gateway's CPU under putAll load went to that); a kept one has
// its grown stack already. The zero value is not usable: see newWorkers.
type workers struct {
	work chan func()   // unbuffered: a send succeeds only when a worker waits
	quit chan struct{} // closed by stop
	idle atomic.Int32  // workers waiting for work
}

// newWorkers returns workers with none started yet.
func newWorkers() *workers {
	return &workers{work: make(chan func()), quit: make(chan struct{})}
}

// run runs f on a waiting worker, or on a new one when none waits.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
	default:
		go w.loop(f)
	}
}

// loop runs f, then whatever run hands it, until stop, or until enough others wait.
func (w *workers) loop(f func()) {
	for {
		f()
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		select {
		case f = <-w.work:
			w.idle.Add(-1)
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}

// stop ends the waiting workers, and each busy one once its call returns; run still works
// after it, on a goroutine that ends with its call.
func (w *workers) stop() { close(w.quit) }
