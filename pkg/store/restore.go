package store

import (
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
)

// restorer applies the writes recovery reads (a snapshot's entries, the log's batches) to a
// Memory on one goroutine per core, each owning a fixed set of shards, while the caller goes
// on decoding: recovery is bound by the cache misses of finding each key's slot, and both
// cores can wait on those at once. A shard's writes reach it in the order they were added, as
// they must (a later write of a key wins), because one worker serves the shard from one FIFO
// queue. Writes are handed over in slices of restoreChunk, and each worker touches the home
// slots, then the entries, of a whole slice before it restores any of them (as Memory.findAll
// does for a batch), so that the cache misses of one slice overlap.
//
// What the added writes reference (keys and values) must stay unchanged until finish returns:
// the snapshot's body and the log's segments are each read into a buffer of their own.
type restorer struct {
	mem     *Memory
	queues  []chan []restoreOp // one per worker; nil: restore at once, on the caller's goroutine
	pending [][]restoreOp      // per worker: the slice being filled
	wg      sync.WaitGroup
	touched atomic.Uint64 // what the touching passes read, kept so that they are not optimised away
}

// restoreOp is one write to restore at a version, with its key's hash.
type restoreOp struct {
	w       Write
	version int64
	h       uint64
}

const (
	// restoreChunk is how many writes a worker takes at once: enough to overlap many misses,
	// few enough to stay in the cache between the touching pass and the restoring one.
	restoreChunk = 256
	// restoreQueue bounds the chunks waiting per worker, so that decoding runs only a little
	// ahead of restoring.
	restoreQueue = 16
)

// newRestorer returns a restorer of mem with a worker per core (at most one per shard).
func newRestorer(mem *Memory) *restorer {
	r := &restorer{mem: mem}
	n := min(runtime.GOMAXPROCS(0), len(mem.shards))
	if n < 2 {
		return r
	}
	r.queues = make([]chan []restoreOp, n)
	r.pending = make([][]restoreOp, n)
	for i := range r.queues {
		r.queues[i] = make(chan []restoreOp, restoreQueue)
		r.wg.Add(1)
		go r.work(r.queues[i])
	}
	return r
}

// add restores w at version: at once without workers, else by the worker of w's shard.
func (r *restorer) add(w Write, version int64) {
	h := maphash.String(r.mem.seed, w.Key)
	if r.queues == nil {
		r.mem.restoreHashed(&w, version, h)
		return
	}
	i := int(h>>r.mem.shift) % len(r.queues)
	if r.pending[i] == nil {
		r.pending[i] = make([]restoreOp, 0, restoreChunk)
	}
	r.pending[i] = append(r.pending[i], restoreOp{w: w, version: version, h: h})
	if len(r.pending[i]) == restoreChunk {
		r.queues[i] <- r.pending[i]
		r.pending[i] = nil
	}
}

// finish hands over what is pending and returns once every write added is restored.
func (r *restorer) finish() {
	for i, q := range r.queues {
		if len(r.pending[i]) > 0 {
			q <- r.pending[i]
		}
		close(q)
	}
	r.wg.Wait()
}

// work restores the chunks of one queue until it is closed.
func (r *restorer) work(q <-chan []restoreOp) {
	defer r.wg.Done()
	var touched uint64
	for ops := range q {
		// The worker alone writes these shards, so it may read them without their locks: first
		// every home slot, then the entries they point to, each pass's misses overlapping.
		for i := range ops {
			touched ^= r.mem.shardOf(ops[i].h).index.touch(ops[i].h)
		}
		for i := range ops {
			sh := r.mem.shardOf(ops[i].h)
			if ref, ok := sh.index.get(ops[i].h); ok {
				touched ^= uint64(sh.arena.bytes(ref, 1)[0])
			}
		}
		for i := range ops {
			r.mem.restoreHashed(&ops[i].w, ops[i].version, ops[i].h)
		}
	}
	r.touched.Add(touched)
}
