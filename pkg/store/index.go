package store

// hashIndex maps a key's 64-bit hash to its entry in the arena: an open-addressing table
// with linear probing, one flat slice of pointer-free slots. It replaces a Go map because a
// lookup in a large Go map chases several dependent pointers (directory, table, group) and
// so waits on several cache misses in turn, where a probe here reads one slot, usually in
// one cache line, whose address follows from the hash alone: a batch can touch all its
// slots before it needs any of them (see Memory.findAll). With 2 Mi keys resident, a lookup
// plus a read of the entry takes 311–345 ns with a Go map and 189–194 ns with this table
// (BenchmarkIndexLookup).
//
// Deletion shifts later slots of the probe run back (no tombstones), so lookups stay short
// however many keys come and go. The table doubles once it is three-quarters full.
type hashIndex struct {
	slots []indexSlot
	n     int
}

// indexSlot is one slot of a hashIndex.
type indexSlot struct {
	hash uint64
	// chunk is the entry's arena chunk plus one: 0 marks an empty slot.
	chunk uint32
	off   uint32
}

func (s indexSlot) ref() arenaRef { return arenaRef{chunk: s.chunk - 1, off: s.off} }

const minIndexSlots = 8

// slot returns where h is, or where it would go, and whether it is there.
func (x *hashIndex) slot(h uint64) (int, bool) {
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch s := &x.slots[i]; {
		case s.chunk == 0:
			return int(i), false
		case s.hash == h:
			return int(i), true
		}
	}
}

// get returns the entry indexed under h.
func (x *hashIndex) get(h uint64) (arenaRef, bool) {
	if x.n == 0 {
		return arenaRef{}, false
	}
	i, ok := x.slot(h)
	if !ok {
		return arenaRef{}, false
	}
	return x.slots[i].ref(), true
}

// touch reads h's home slot and returns a word of it, for the caller to fold into a value it
// keeps: loading the slot early brings it into the cache (see Memory.findAll).
func (x *hashIndex) touch(h uint64) uint64 {
	if len(x.slots) == 0 {
		return 0
	}
	return x.slots[h&uint64(len(x.slots)-1)].hash
}

// set indexes ref under h, replacing what h held.
func (x *hashIndex) set(h uint64, ref arenaRef) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	i, ok := x.slot(h)
	if !ok {
		x.n++
	}
	x.slots[i] = indexSlot{hash: h, chunk: ref.chunk + 1, off: ref.off}
}

// del removes h, and reports whether it was there.
func (x *hashIndex) del(h uint64) bool {
	if x.n == 0 {
		return false
	}
	hole, ok := x.slot(h)
	if !ok {
		return false
	}
	x.n--
	mask := len(x.slots) - 1
	// Close the hole: a later slot of the run moves into it when the hole lies on that
	// slot's probe path (between its home and where it is), and leaves a hole of its own.
	for j := (hole + 1) & mask; x.slots[j].chunk != 0; j = (j + 1) & mask {
		home := int(x.slots[j].hash) & mask
		if (j-home)&mask >= (j-hole)&mask {
			x.slots[hole] = x.slots[j]
			hole = j
		}
	}
	x.slots[hole] = indexSlot{}
	return true
}

func (x *hashIndex) grow() { x.resize(max(minIndexSlots, 2*len(x.slots))) }

// reserve makes room for n hashes in all, so that the table does not grow while they are set
// (recovery knows how many keys are coming).
func (x *hashIndex) reserve(n int) {
	size := max(minIndexSlots, len(x.slots))
	for n*4 > size*3 {
		size *= 2
	}
	if size > len(x.slots) {
		x.resize(size)
	}
}

// resize moves the hashes into a table of size slots (a power of two, large enough).
func (x *hashIndex) resize(size int) {
	old := x.slots
	x.slots = make([]indexSlot, size)
	for _, s := range old {
		if s.chunk != 0 {
			i, _ := x.slot(s.hash)
			x.slots[i] = s
		}
	}
}

// len returns the number of hashes indexed.
func (x *hashIndex) len() int { return x.n }

// each calls fn with every hash and its entry.
func (x *hashIndex) each(fn func(h uint64, ref arenaRef)) {
	for _, s := range x.slots {
		if s.chunk != 0 {
			fn(s.hash, s.ref())
		}
	}
}

// moveGroup is how many entries move hands to its function at once.
const moveGroup = 32

// move replaces every entry's place with its new place (compaction moves entries): it hands
// to the places of up to moveGroup entries at a time, for to to replace in refs, so that to can
// load them all before it needs any of them (see shard.compactIfWasteful).
func (x *hashIndex) move(to func(refs []arenaRef)) {
	var group [moveGroup]arenaRef
	var at [moveGroup]int32
	n := 0
	flush := func() {
		to(group[:n])
		for j, i := range at[:n] {
			x.slots[i].chunk, x.slots[i].off = group[j].chunk+1, group[j].off
		}
		n = 0
	}
	for i := range x.slots {
		if s := &x.slots[i]; s.chunk != 0 {
			group[n], at[n] = s.ref(), int32(i)
			if n++; n == moveGroup {
				flush()
			}
		}
	}
	if n > 0 {
		flush()
	}
}
