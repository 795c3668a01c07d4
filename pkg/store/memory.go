package store

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"math/bits"
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

	stop     chan struct{}
	sweeping sync.WaitGroup
	closed   sync.Once
}

type shard struct {
	mu sync.RWMutex
	m  map[string]entry
	// expiring counts keys with a TTL, so the sweeper skips shards that have none.
	expiring int
	_        [24]byte // keep hot shards on separate cache lines
}

type entry struct {
	value       []byte
	version     int64
	expiresAtMs int64
}

func (e *entry) expired(nowMs int64) bool {
	return e.expiresAtMs != 0 && nowMs >= e.expiresAtMs
}

// keyRef is one key of a call, located: its hash and its index in the caller's slice.
type keyRef struct {
	hash uint64
	idx  int32
}

// scratch is per-call working memory, pooled so the write path does not allocate per call.
type scratch struct {
	refs []keyRef
	// prior records, per write index, what the check phase saw in the map.
	prior []priorState
}

type priorState uint8

const (
	priorResident priorState = 1 << iota // the key is in the map (maybe expired)
	priorExpiring                        // ... and has a TTL
)

// NewMemory returns an empty Memory engine and starts its sweeper when opts asks for one.
func NewMemory(opts Options) (*Memory, error) {
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
	s := &Memory{
		shards: make([]shard, n),
		shift:  uint(64 - bits.TrailingZeros(uint(n))),
		seed:   maphash.MakeSeed(),
		now:    opts.Now,
		stop:   make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]entry)
	}
	s.scratch.New = func() any { return new(scratch) }
	if opts.SweepInterval > 0 {
		s.sweeping.Add(1)
		go s.sweepEvery(opts.SweepInterval)
	}
	return s, nil
}

// locate hashes every key once and sorts the references by hash, which groups them by shard in
// ascending shard order.
func (s *Memory) locate(sc *scratch, n int, key func(int) string) []keyRef {
	refs := slices.Grow(sc.refs[:0], n)[:n]
	for i := range refs {
		refs[i] = keyRef{hash: maphash.String(s.seed, key(i)), idx: int32(i)}
	}
	slices.SortFunc(refs, func(a, b keyRef) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	sc.refs = refs
	return refs
}

func (s *Memory) shardOf(h uint64) *shard { return &s.shards[h>>s.shift] }

// lockShards locks each shard the sorted refs touch, once, in ascending order.
func (s *Memory) lockShards(refs []keyRef, write bool) {
	var prev *shard
	for _, r := range refs {
		if sh := s.shardOf(r.hash); sh != prev {
			if write {
				sh.mu.Lock()
			} else {
				sh.mu.RLock()
			}
			prev = sh
		}
	}
}

func (s *Memory) unlockShards(refs []keyRef, write bool) {
	var prev *shard
	for _, r := range refs {
		if sh := s.shardOf(r.hash); sh != prev {
			if write {
				sh.mu.Unlock()
			} else {
				sh.mu.RUnlock()
			}
			prev = sh
		}
	}
}

// firstDuplicate returns the key that appears twice among the sorted refs, if any. Equal keys
// have equal hashes, so only runs of equal hashes need comparing.
func firstDuplicate(refs []keyRef, writes []Write) (string, bool) {
	for start := 0; start < len(refs); {
		end := start + 1
		for end < len(refs) && refs[end].hash == refs[start].hash {
			end++
		}
		for i := start; i < end; i++ {
			for j := i + 1; j < end; j++ {
				if k := writes[refs[i].idx].Key; k == writes[refs[j].idx].Key {
					return k, true
				}
			}
		}
		start = end
	}
	return "", false
}

// check evaluates w's precondition against the key's current state.
func check(w *Write, cur entry, live bool) Result {
	var version int64
	if live {
		version = cur.version
	}
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
func (s *Memory) Apply(mode Mode, writes []Write, results []Result) (Outcome, error) {
	if len(results) != len(writes) {
		return Outcome{}, fmt.Errorf("store: %d results for %d writes", len(results), len(writes))
	}
	if mode != Atomic && mode != BestEffort {
		return Outcome{}, fmt.Errorf("store: unknown mode %d", mode)
	}
	if len(writes) == 0 {
		return Outcome{}, nil
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	refs := s.locate(sc, len(writes), func(i int) string { return writes[i].Key })
	if k, dup := firstDuplicate(refs, writes); dup {
		return Outcome{}, &DuplicateKeyError{Key: k}
	}
	prior := slices.Grow(sc.prior[:0], len(writes))[:len(writes)]
	sc.prior = prior

	s.lockShards(refs, true)
	defer s.unlockShards(refs, true)

	nowMs := s.now().UnixMilli()
	failed := 0
	for _, r := range refs {
		w := &writes[r.idx]
		cur, resident := s.shardOf(r.hash).m[w.Key]
		live := resident && !cur.expired(nowMs)
		res := check(w, cur, live)
		results[r.idx] = res
		if res.Code != OK {
			failed++
		}
		var p priorState
		if resident {
			p |= priorResident
			if cur.expiresAtMs != 0 {
				p |= priorExpiring
			}
		}
		prior[r.idx] = p
	}
	if failed == len(writes) || (mode == Atomic && failed > 0) {
		return Outcome{}, nil
	}

	rev := s.rev.Add(1)
	var keyDelta int64
	for _, r := range refs {
		res := &results[r.idx]
		if res.Code != OK {
			continue
		}
		w := &writes[r.idx]
		sh := s.shardOf(r.hash)
		p := prior[r.idx]
		if p&priorExpiring != 0 {
			sh.expiring--
		}
		if w.Delete {
			delete(sh.m, w.Key)
			keyDelta--
		} else {
			sh.m[w.Key] = entry{value: w.Value, version: rev, expiresAtMs: w.ExpiresAtMs}
			if w.ExpiresAtMs != 0 {
				sh.expiring++
			}
			if p&priorResident == 0 {
				keyDelta++
			}
		}
		res.Version = rev
	}
	if keyDelta != 0 {
		s.keys.Add(keyDelta)
	}
	return Outcome{Revision: rev, Applied: len(writes) - failed}, nil
}

// GetAll implements Engine. A key may be named more than once.
func (s *Memory) GetAll(keys []string, items []Item) int64 {
	if len(items) != len(keys) {
		panic(fmt.Sprintf("store: %d items for %d keys", len(items), len(keys)))
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	refs := s.locate(sc, len(keys), func(i int) string { return keys[i] })

	s.lockShards(refs, false)
	defer s.unlockShards(refs, false)
	nowMs := s.now().UnixMilli()
	for _, r := range refs {
		e, ok := s.shardOf(r.hash).m[keys[r.idx]]
		if !ok || e.expired(nowMs) {
			items[r.idx] = Item{}
			continue
		}
		items[r.idx] = Item{Value: e.value, Version: e.version, ExpiresAtMs: e.expiresAtMs, Found: true}
	}
	// Every write that touched these shards either finished before the locks were taken or
	// waits for them, and revisions are drawn under the shard locks: the items are exactly the
	// state as of this revision.
	return s.rev.Load()
}

// Stats implements Engine.
func (s *Memory) Stats() Stats {
	return Stats{Keys: s.keys.Load(), Revision: s.rev.Load()}
}

// Sweep frees the keys that have expired and returns how many it freed. The background sweeper
// calls it every SweepInterval; tests call it directly.
func (s *Memory) Sweep() int {
	nowMs := s.now().UnixMilli()
	freed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.expiring > 0 {
			for k, e := range sh.m {
				if e.expired(nowMs) {
					delete(sh.m, k)
					sh.expiring--
					freed++
				}
			}
		}
		sh.mu.Unlock()
	}
	if freed > 0 {
		s.keys.Add(int64(-freed))
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
