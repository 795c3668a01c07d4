package store

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Memory engine.
type Options struct {
	// Shards is the number of independently locked shards, a power of two; 0 means 256.
	Shards int
	// SweepInterval is how often a background sweeper frees expired keys; 0 disables it
	// (expired keys still read as absent, and Sweep frees them on demand).
	SweepInterval time.Duration
	// Now is the clock TTLs are measured against; nil means time.Now.
	Now func() time.Time
	// MaxBytes is the memory quota: the most bytes the resident keys may count (see
	// KeyOverhead); 0 means no quota.
	MaxBytes int64
}

// Memory is the sharded in-memory Engine. Keys are spread over shards by hash; a batch locks
// each shard it touches once, in ascending shard order, so concurrent batches never deadlock
// and a reader that locks the same way never sees part of a batch.
type Memory struct {
	shards  []shard
	shift   uint // shard index = hash >> shift: the top bits, so sorting by hash groups by shard
	seed    maphash.Seed
	now     func() time.Time
	rev     atomic.Int64
	keys    atomic.Int64
	scratch sync.Pool

	// used is what the resident keys count against maxBytes (see quota.go), quotaRefusals the
	// batches refused for it.
	maxBytes      int64
	used          atomic.Int64
	quotaRefusals atomic.Uint64

	// committer, when set, is told of every batch as it commits (Durable's log); seqMu then
	// orders revisions and commits.
	committer committer
	seqMu     sync.Mutex

	stop     chan struct{}
	sweeping sync.WaitGroup
	closed   sync.Once
}

// A committer is told of every batch a Memory commits, so that it can keep a record of them:
// Durable's write-ahead log is one. Memory knows nothing of what is kept or where; it only calls
// prepare and commit for each batch, in this order, with the batch's shards locked.
type committer interface {
	// prepare appends what commit needs of batch b, whose results are decided (but for the
	// versions of applied writes, which take the revision commit is given), to buf.
	prepare(buf []byte, b Batch, results []Result) []byte
	// commit is given what prepare built and the batch's revision. Calls come one at a time, in
	// revision order. An error refuses the batch: nothing is applied and the revision is not
	// taken. The uint64 is the committer's own (Durable's log position), handed back to the
	// caller of apply.
	commit(prepared []byte, rev int64) (uint64, error)
}

// keyRef is one key of a call, located: its hash and its index in the caller's slice.
type keyRef struct {
	hash uint64
	idx  int32
}

// scratch is per-call working memory, pooled so the write path does not allocate per call.
type scratch struct {
	refs []keyRef
	rec  []byte // the committer's encoding of the batch being committed
	// found holds, per key index, where findAll found the key.
	found []loc
	// touched folds the words findAll loads only to bring them into the cache; keeping it
	// makes the loads count.
	touched uint64
}

// NewMemory returns an empty Memory engine and starts its sweeper when opts asks for one.
func NewMemory(opts Options) (*Memory, error) { return newMemory(opts, nil) }

// newMemory returns an empty Memory that tells c (when not nil) of every batch it commits.
func newMemory(opts Options, c committer) (*Memory, error) {
	n := opts.Shards
	if n == 0 {
		n = 256
	}
	if n < 1 || n > 1<<16 || n&(n-1) != 0 {
		return nil, fmt.Errorf("store: shards must be a power of two between 1 and 65536, got %d", opts.Shards)
	}
	if opts.SweepInterval < 0 {
		return nil, fmt.Errorf("store: negative sweep interval %v", opts.SweepInterval)
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("store: negative memory quota %d", opts.MaxBytes)
	}
	s := &Memory{
		shards:    make([]shard, n),
		shift:     uint(64 - bits.TrailingZeros(uint(n))),
		seed:      maphash.MakeSeed(),
		now:       opts.Now,
		maxBytes:  opts.MaxBytes,
		committer: c,
		stop:      make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for i := range s.shards {
		s.shards[i] = newShard()
	}
	s.scratch.New = func() any { return new(scratch) }
	if c == nil { // a Durable starts the sweeper once it has recovered (see restoreHashed)
		s.startSweeping(opts.SweepInterval)
	}
	return s, nil
}

// startSweeping starts the sweeper, which frees expired keys every interval (none for 0).
func (s *Memory) startSweeping(interval time.Duration) {
	if interval > 0 {
		s.sweeping.Add(1)
		go s.sweepEvery(interval)
	}
}

// locate hashes every key once and sorts the references by hash, which groups them by shard in
// ascending shard order.
func (s *Memory) locate(sc *scratch, n int, key func(int) string) []keyRef {
	refs := slices.Grow(sc.refs[:0], n)[:n]
	for i := range refs {
		refs[i] = keyRef{hash: maphash.String(s.seed, key(i)), idx: int32(i)}
	}
	if n <= smallSort {
		sortSmall(refs)
	} else {
		slices.SortFunc(refs, compareRefs)
	}
	sc.refs = refs
	return refs
}

// compareRefs orders key references by hash, then by index.
func compareRefs(a, b keyRef) int {
	if c := cmp.Compare(a.hash, b.hash); c != 0 {
		return c
	}
	return cmp.Compare(a.idx, b.idx)
}

// smallSort is the most keys locate sorts by insertion: for the usual batch (16 keys) it takes
// a third of the time slices.SortFunc does, which calls its comparison through a pointer.
const smallSort = 32

// sortSmall sorts refs, which are in index order, by hash: insertion sort is stable, so keys of
// one hash stay in index order.
func sortSmall(refs []keyRef) {
	for i := 1; i < len(refs); i++ {
		r := refs[i]
		j := i
		for ; j > 0 && refs[j-1].hash > r.hash; j-- {
			refs[j] = refs[j-1]
		}
		refs[j] = r
	}
}

func (s *Memory) shardOf(h uint64) *shard { return &s.shards[h>>s.shift] }

// findAll locates every key of a call, its shards locked, into sc.found (by key index).
// Finding a key costs two cache misses on a large store, the index slot and then the entry
// that verifies the key; one after the other, a batch would wait for 2n misses in turn. So
// the passes are split: the first loads every key's index slot, the second probes the index,
// the third loads every entry found, the last verifies; each pass's loads are independent of
// one another, so the CPU has them all in flight at once.
func (s *Memory) findAll(sc *scratch, refs []keyRef, key func(int) string) []loc {
	found := slices.Grow(sc.found[:0], len(refs))[:len(refs)]
	sc.found = found
	var touched uint64
	for _, r := range refs {
		touched ^= s.shardOf(r.hash).index.touch(r.hash)
	}
	for _, r := range refs {
		found[r.idx] = loc{}
		if ref, ok := s.shardOf(r.hash).index.get(r.hash); ok {
			found[r.idx] = loc{ref, inIndex}
		}
	}
	for _, r := range refs { // a loop of its own, short, so every load is in flight at once
		if l := found[r.idx]; l.found() {
			touched ^= uint64(s.shardOf(r.hash).arena.bytes(l.ref, 1)[0])
		}
	}
	sc.touched = touched
	for _, r := range refs {
		l := found[r.idx]
		found[r.idx] = s.shardOf(r.hash).verify(key(int(r.idx)), l.ref, l.found())
	}
	return found
}

// eachShard calls fn once for each shard the sorted refs touch, in ascending order.
func (s *Memory) eachShard(refs []keyRef, fn func(*shard)) {
	var prev *shard
	for _, r := range refs {
		if sh := s.shardOf(r.hash); sh != prev {
			fn(sh)
			prev = sh
		}
	}
}

// lockShards locks each shard the sorted refs touch, once, in ascending order.
func (s *Memory) lockShards(refs []keyRef, write bool) {
	s.eachShard(refs, func(sh *shard) { sh.lock(write) })
}

// spinTries is how many times lock tries a busy shard, yielding in between, before it blocks.
// A shard is held for microseconds, but a goroutine that blocks on it parks, and when that
// leaves a P idle, waking it again costs more than the wait: with two goroutines writing
// 16-key batches (PutAll16Parallel), spinning took 389 ns/key down to 299.
const spinTries = 64

// lock locks the shard for writing or for reading.
func (sh *shard) lock(write bool) {
	for range spinTries {
		if write && sh.mu.TryLock() || !write && sh.mu.TryRLock() {
			return
		}
		runtime.Gosched()
	}
	if write {
		sh.mu.Lock()
	} else {
		sh.mu.RLock()
	}
}

func (s *Memory) unlockShards(refs []keyRef, write bool) {
	if write {
		s.eachShard(refs, func(sh *shard) { sh.mu.Unlock() })
	} else {
		s.eachShard(refs, func(sh *shard) { sh.mu.RUnlock() })
	}
}

// firstDuplicate returns, when a key appears more than once among the sorted refs, the key whose
// repeat comes first in the batch: the answer depends on the batch alone, not on the hashes
// (which differ from one engine to the next), and is the key the service names when it finds
// the repeat itself. Equal keys have equal hashes, so only runs of equal hashes need comparing;
// a run is in index order.
func firstDuplicate(refs []keyRef, writes []Write) (string, bool) {
	repeat := int32(-1) // the index of the first repeat
	for start := 0; start < len(refs); {
		end := start + 1
		for end < len(refs) && refs[end].hash == refs[start].hash {
			end++
		}
		for j := start + 1; j < end; j++ {
			for i := start; i < j; i++ {
				if writes[refs[i].idx].Key == writes[refs[j].idx].Key {
					if repeat < 0 || refs[j].idx < repeat {
						repeat = refs[j].idx
					}
					break
				}
			}
		}
		start = end
	}
	if repeat < 0 {
		return "", false
	}
	return writes[repeat].Key, true
}

// check evaluates w's precondition against the key's current version (0 when absent or
// expired).
func check(w *Write, version int64) Result {
	live := version != 0
	switch {
	case w.ExpectedVersion == 0 && live:
		return Result{Code: AlreadyExists, Version: version}
	case w.ExpectedVersion > 0 && w.ExpectedVersion != version:
		return Result{Code: VersionMismatch, Version: version}
	case w.Delete && !live:
		return Result{Code: NotFound}
	}
	return Result{Code: OK, Version: version, Created: !live && !w.Delete}
}

// Apply implements Engine.
func (s *Memory) Apply(_ context.Context, b Batch, results []Result) (Outcome, error) {
	out, _, err := s.apply(b, results)
	return out, err
}

// apply checks and applies a batch. It returns what the committer returned for the batch, 0
// when nothing was committed.
func (s *Memory) apply(b Batch, results []Result) (Outcome, uint64, error) {
	writes := b.Writes
	if len(results) != len(writes) {
		return Outcome{}, 0, fmt.Errorf("store: %d results for %d writes", len(results), len(writes))
	}
	if b.Mode != Atomic && b.Mode != BestEffort {
		return Outcome{}, 0, fmt.Errorf("store: unknown mode %d", b.Mode)
	}
	if len(writes) == 0 {
		return Outcome{}, 0, nil
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	refs := s.locate(sc, len(writes), func(i int) string { return writes[i].Key })
	if k, dup := firstDuplicate(refs, writes); dup {
		return Outcome{}, 0, &DuplicateKeyError{Key: k}
	}
	return s.applyLocked(sc, refs, b, results)
}

// applyLocked checks and applies a batch with its shards locked. It returns what the committer
// returned for the batch, 0 when nothing was committed.
func (s *Memory) applyLocked(sc *scratch, refs []keyRef, b Batch, results []Result) (Outcome, uint64, error) {
	writes := b.Writes
	s.lockShards(refs, true)
	found := s.findAll(sc, refs, func(i int) string { return writes[i].Key })
	nowMs := s.now().UnixMilli()
	failed := 0
	var grow int64 // the change in the store's bytes
	for _, r := range refs {
		w := &writes[r.idx]
		sh := s.shardOf(r.hash)
		l := found[r.idx]
		var version int64 // 0: absent or expired
		var replaced int64
		if l.found() {
			h := sh.header(l.ref)
			if !h.expired(nowMs) {
				version = h.version
			}
			replaced = h.cost()
		}
		res := check(w, version)
		results[r.idx] = res
		if res.Code != OK {
			failed++
			continue
		}
		grow += w.cost() - replaced
	}
	if failed == len(writes) || (b.Mode == Atomic && failed > 0) {
		s.unlockShards(refs, true)
		return Outcome{}, 0, nil
	}
	if err := s.reserve(grow); err != nil {
		s.unlockShards(refs, true)
		return Outcome{}, 0, err
	}
	rev, token, err := s.sequence(sc, b, results)
	if err != nil {
		s.used.Add(-grow)
		s.unlockShards(refs, true)
		return Outcome{}, 0, err
	}
	// The batch is committed: nothing can fail it now. Each shard is written, compacted (which
	// moves entries, so after the writes) and released in turn, in lock order, so the shards
	// written last are not held while the first are written. Readers and writers lock in the
	// same order, so none can see one of this batch's shards written and a later one not: to
	// reach the later shard it must wait for this batch to release it.
	var keyDelta int64
	for start := 0; start < len(refs); {
		sh := s.shardOf(refs[start].hash)
		end := start
		for ; end < len(refs) && s.shardOf(refs[end].hash) == sh; end++ {
			r := refs[end]
			if results[r.idx].Code != OK {
				continue
			}
			keyDelta += sh.write(&writes[r.idx], r.hash, found[r.idx], rev)
			results[r.idx].Version = rev
		}
		sh.compactIfWasteful()
		sh.mu.Unlock()
		start = end
	}
	if keyDelta != 0 {
		s.keys.Add(keyDelta)
	}
	return Outcome{Revision: rev, Applied: len(writes) - failed}, token, nil
}

// sequence draws the batch's revision and, with a committer, commits the batch: both under one
// lock, so that the committer is told of batches in revision order.
func (s *Memory) sequence(sc *scratch, b Batch, results []Result) (rev int64, token uint64, err error) {
	c := s.committer
	if c == nil {
		return s.rev.Add(1), 0, nil
	}
	sc.rec = c.prepare(sc.rec[:0], b, results)
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	rev = s.rev.Load() + 1
	if token, err = c.commit(sc.rec, rev); err != nil {
		return 0, 0, err
	}
	s.rev.Store(rev)
	return rev, token, nil
}

// write applies one write at version rev to the shard (locked by the caller), where find said
// the key is, and returns the change in resident keys.
func (sh *shard) write(w *Write, h uint64, l loc, rev int64) int64 {
	if w.Delete {
		if !l.found() {
			return 0
		}
		return sh.remove(w.Key, h, l)
	}
	return sh.put(w.Key, h, l, w.Value, rev, w.ExpiresAtMs)
}

// GetAll implements Engine. A key may be named more than once.
func (s *Memory) GetAll(_ context.Context, keys []string, items []Item) (int64, error) {
	if len(items) != len(keys) {
		return 0, fmt.Errorf("store: %d items for %d keys", len(items), len(keys))
	}
	return s.read(keys, items), nil
}

// read fills items under the shards' read locks and returns the revision they are as of.
func (s *Memory) read(keys []string, items []Item) int64 {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	refs := s.locate(sc, len(keys), func(i int) string { return keys[i] })

	s.lockShards(refs, false)
	defer s.unlockShards(refs, false)
	found := s.findAll(sc, refs, func(i int) string { return keys[i] })
	nowMs := s.now().UnixMilli()
	for _, r := range refs {
		sh := s.shardOf(r.hash)
		l := found[r.idx]
		if !l.found() {
			items[r.idx] = Item{}
			continue
		}
		h, _, value := sh.entry(l.ref)
		if h.expired(nowMs) {
			items[r.idx] = Item{}
			continue
		}
		items[r.idx] = Item{Value: value, Version: h.version, ExpiresAtMs: h.expiresAtMs, Found: true}
	}
	// Every write that touched these shards either finished before the locks were taken or
	// waits for them, and revisions are drawn under the shard locks: the items are exactly the
	// state as of this revision.
	return s.rev.Load()
}

// WaitsForDurability implements Engine: false, Memory keeps nothing beyond the process.
func (s *Memory) WaitsForDurability() bool { return false }

// Stats implements Engine.
func (s *Memory) Stats() Stats {
	return Stats{Keys: s.keys.Load(), Revision: s.rev.Load(),
		Bytes: s.used.Load(), MaxBytes: s.maxBytes, QuotaRefusals: s.quotaRefusals.Load()}
}

// Sweep frees the keys that have expired and returns how many it freed. The background sweeper
// calls it every SweepInterval; tests call it directly.
func (s *Memory) Sweep() int {
	nowMs := s.now().UnixMilli()
	freed := 0
	var freedBytes int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.expiring > 0 {
			var expired []residentKey
			sh.each(func(rk residentKey) {
				if rk.header.expired(nowMs) {
					expired = append(expired, rk)
				}
			})
			for _, rk := range expired {
				sh.remove(string(rk.key), rk.hash, rk.loc)
				freedBytes += rk.header.cost()
			}
			freed += len(expired)
			sh.compactIfWasteful()
		}
		sh.mu.Unlock()
	}
	if freed > 0 {
		s.keys.Add(int64(-freed))
		s.used.Add(-freedBytes)
	}
	return freed
}

func (s *Memory) sweepEvery(interval time.Duration) {
	defer s.sweeping.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Close stops the sweeper. The engine still answers calls afterwards; Close is idempotent.
func (s *Memory) Close() error {
	s.closed.Do(func() { close(s.stop) })
	s.sweeping.Wait()
	return nil
}

var _ Engine = (*Memory)(nil)

// What Durable builds on: recovery restores keys and the revision, a snapshot scans the keys at
// a cut between commits.

// restoreHashed applies w (whose key hashes to h) at version unconditionally, as recovery does: a key is restored whatever
// the quota says, since it was acknowledged. It returns the change in resident keys and bytes,
// for the caller to add to the store's counts. It takes no lock: recovery runs before the store
// is shared and before its sweeper starts, and restores each shard from one goroutine.
func (s *Memory) restoreHashed(w *Write, version int64, h uint64) (keys, bytes int64) {
	sh := s.shardOf(h)
	l := sh.find(w.Key, h)
	bytes = sh.growth(w, l)
	keys = sh.write(w, h, l, version)
	sh.compactIfWasteful()
	return keys, bytes
}

// raiseRevision makes the store's revision at least rev.
func (s *Memory) raiseRevision(rev int64) {
	if rev > s.rev.Load() {
		s.rev.Store(rev)
	}
}

// between calls fn with the store's revision while no batch commits: the committer (a Memory
// has one when between is of use) has been told of every batch up to that revision and of none
// after it.
func (s *Memory) between(fn func(rev int64)) {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	fn(s.rev.Load())
}

// scan calls fn with every resident key (expired ones included), shard by shard: a shard's keys
// are gathered under its read lock and handed to fn once it is released, so a slow fn (a
// snapshot writing to disk) holds no writer up. key and value are the arena's bytes, which never
// change; fn must not modify them. scan stops at fn's first error and returns how many keys fn
// was given.
func (s *Memory) scan(fn func(key, value []byte, version, expiresAtMs int64) error) (int64, error) {
	var batch []residentKey
	var n int64
	for i := range s.shards {
		sh := &s.shards[i]
		batch = batch[:0]
		sh.mu.RLock()
		sh.each(func(rk residentKey) { batch = append(batch, rk) })
		sh.mu.RUnlock()
		for _, rk := range batch {
			if err := fn(rk.key, rk.value, rk.header.version, rk.header.expiresAtMs); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
