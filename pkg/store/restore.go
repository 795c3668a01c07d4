package store

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
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
// What the added writes reference (keys and values) must stay unchanged until settle or finish
// returns: the log reads a segment into its buffer only once the records of the one before are
// settled.
type restorer struct {
	mem      *Memory
	queues   []chan []restoreOp // one per worker; nil: restore at once, on the caller's goroutine
	pending  [][]restoreOp      // per worker: the slice being filled
	free     chan []restoreOp   // slices restored, for add to fill again rather than allocate
	wg       sync.WaitGroup     // the workers
	inFlight sync.WaitGroup     // the slices handed over and not restored yet
	touched  atomic.Uint64      // what the touching passes read, kept so that they are not optimised away
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
	r.free = make(chan []restoreOp, n*(restoreQueue+2))
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
		keys, bytes := r.mem.restoreHashed(&w, version, h)
		r.mem.keys.Add(keys)
		r.mem.used.Add(bytes)
		return
	}
	i := int(h>>r.mem.shift) % len(r.queues)
	if r.pending[i] == nil {
		select {
		case ops := <-r.free:
			r.pending[i] = ops[:0]
		default:
			r.pending[i] = make([]restoreOp, 0, restoreChunk)
		}
	}
	r.pending[i] = append(r.pending[i], restoreOp{w: w, version: version, h: h})
	if len(r.pending[i]) == restoreChunk {
		r.handOver(i)
	}
}

// handOver queues worker i's pending slice.
func (r *restorer) handOver(i int) {
	r.inFlight.Add(1)
	r.queues[i] <- r.pending[i]
	r.pending[i] = nil
}

// settle hands over what is pending and returns once every write added is restored, so that
// what they referenced may change.
func (r *restorer) settle() error {
	for i := range r.queues {
		if len(r.pending[i]) > 0 {
			r.handOver(i)
		}
	}
	r.inFlight.Wait()
	return nil
}

// finish settles, and stops the workers.
func (r *restorer) finish() {
	_ = r.settle()
	for _, q := range r.queues {
		close(q)
	}
	r.wg.Wait()
}

// work restores the chunks of one queue until it is closed.
func (r *restorer) work(q <-chan []restoreOp) {
	defer r.wg.Done()
	var touched uint64
	var keys, bytes int64 // added to the store's counts at the end, not contended for each write
	defer func() {
		r.mem.keys.Add(keys)
		r.mem.used.Add(bytes)
		r.touched.Add(touched)
	}()
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
			k, b := r.mem.restoreHashed(&ops[i].w, ops[i].version, ops[i].h)
			keys += k
			bytes += b
		}
		select {
		case r.free <- ops:
		default:
		}
		r.inFlight.Done()
	}
}

var errBadBlock = errors.New("store: malformed snapshot block")

// adoptBlocks restores the entries of a version 2 snapshot's blocks into s, which holds
// nothing else yet, and returns the highest version among them. An entry in a block is laid out
// as in the arena, so it is not copied: a block becomes a chunk of every shard it holds entries
// of, shared by them (arena bytes never change) and freed once they have all compacted or
// replaced those entries. Restoring is then a hash and an index slot per key, and the indexes
// are sized for the entries before they fill.
//
// One goroutine per core restores, each owning the shards the restorer would give it: each
// reads every block and takes its own shards' entries, so a shard is only ever written by its
// owner, without its lock (as restoreHashed). Like the restorer's workers, each takes its
// entries restoreChunk at a time and touches their index slots before it fills any, so that the
// cache misses overlap. A snapshot holds each key once; should a key come twice, the higher
// version wins.
func (s *Memory) adoptBlocks(blocks [][]byte) (int64, error) {
	if len(blocks) == 0 {
		return 0, nil
	}
	entries, err := countEntries(blocks)
	if err != nil {
		return 0, err
	}
	perShard := entries / len(s.shards)
	for i := range s.shards {
		s.shards[i].index.reserve(perShard + perShard/8 + 16) // a little over the mean: few shards grow
	}
	n := max(1, min(runtime.GOMAXPROCS(0), len(s.shards)))
	var wg sync.WaitGroup
	tallies := make([]adoptTally, n)
	for w := range n {
		wg.Go(func() { s.adoptOwn(blocks, w, n, &tallies[w]) })
	}
	wg.Wait()
	var maxVersion int64
	for _, t := range tallies {
		s.keys.Add(t.keys)
		s.used.Add(t.used)
		maxVersion = max(maxVersion, t.maxVersion)
	}
	return maxVersion, nil
}

// countEntries returns how many entries blocks hold, having checked that each block is a
// sequence of whole entries.
func countEntries(blocks [][]byte) (int, error) {
	n := 0
	for b, blk := range blocks {
		if len(blk) > math.MaxUint32 {
			return 0, fmt.Errorf("%w: block %d of %d bytes", errBadBlock, b, len(blk))
		}
		for off := 0; off < len(blk); n++ {
			if len(blk)-off < headerLen {
				return 0, fmt.Errorf("%w: block %d: %d bytes left at offset %d, less than an entry header", errBadBlock, b, len(blk)-off, off)
			}
			size := readHeader(blk[off:]).size()
			if size > len(blk)-off {
				return 0, fmt.Errorf("%w: block %d: an entry of %d bytes at offset %d runs past its end (%d bytes)", errBadBlock, b, size, off, len(blk))
			}
			off += size
		}
	}
	return n, nil
}

// adoptTally is what one worker of adoptBlocks restored.
type adoptTally struct {
	keys, used, maxVersion int64
	touched                uint64 // what the touching passes read, kept so that they are not optimised away
}

// adoptOwn restores the entries of blocks (checked by countEntries) that belong to worker w of
// n (see adoptBlocks).
func (s *Memory) adoptOwn(blocks [][]byte, w, n int, t *adoptTally) {
	type pending struct {
		h   uint64
		off uint32
	}
	var batch [restoreChunk]pending
	// chunk[i] is the number shard i's arena gave the block being read, plus one: 0 until it
	// adopts it.
	chunk := make([]uint32, len(s.shards))
	for _, blk := range blocks {
		clear(chunk)
		for off := 0; off < len(blk); {
			k := 0
			for k < len(batch) && off < len(blk) {
				hdr := readHeader(blk[off:])
				h := maphash.Bytes(s.seed, blk[off+headerLen:off+headerLen+int(hdr.keyLen)])
				if int(h>>s.shift)%n == w {
					batch[k] = pending{h, uint32(off)}
					k++
				}
				off += hdr.size()
			}
			for _, p := range batch[:k] { // a loop of loads alone, so that many are in flight
				t.touched ^= s.shardOf(p.h).index.touch(p.h)
			}
			for _, p := range batch[:k] {
				i := int(p.h >> s.shift)
				sh := &s.shards[i]
				hdr := readHeader(blk[p.off:])
				key := blk[int(p.off)+headerLen : int(p.off)+headerLen+int(hdr.keyLen)]
				if chunk[i] == 0 {
					chunk[i] = sh.arena.adopt(blk) + 1
				}
				keys, bytes := sh.adopt(key, p.h, arenaRef{chunk: chunk[i] - 1, off: p.off}, hdr)
				t.keys += keys
				t.used += bytes
				t.maxVersion = max(t.maxVersion, hdr.version)
			}
		}
	}
}
