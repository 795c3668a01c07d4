package store

import (
	"sync"
)

// A shard keeps its keys the way VictoriaMetrics' fastcache and bigcache do, so that millions
// of resident keys give the Go GC nothing to chase: key and value bytes live in a few large
// byte chunks (the arena), per-key metadata in one slice of pointer-free slots, and the index
// is a map from the key's 64-bit hash to its slot, with no pointers either. Overwrites and
// deletes leave dead bytes behind; once they outweigh the live ones the shard compacts its
// arena, copying the live entries into fresh chunks.
//
// Arena bytes are never modified once written, so a value handed to a reader stays valid
// (the GC keeps a dropped chunk alive while a reader holds a slice of it).
type shard struct {
	mu sync.RWMutex
	// index maps a key's hash to its slot. Two keys with one 64-bit hash (vanishingly rare)
	// are handled by overflow, which holds every key whose hash another key holds in index.
	index    map[uint64]uint32
	overflow map[string]uint32
	slots    []slot
	free     []uint32 // indexes of free slots
	arena    arena
	// expiring counts keys with a TTL, so the sweeper skips shards that have none.
	expiring int
}

// slot is one key's metadata; version 0 marks a free slot.
type slot struct {
	hash        uint64
	version     int64
	expiresAtMs int64
	ref         arenaRef
	keyLen      uint32
	valLen      uint32
}

func (sl *slot) expired(nowMs int64) bool {
	return sl.expiresAtMs != 0 && nowMs >= sl.expiresAtMs
}

func (sl *slot) size() int { return int(sl.keyLen) + int(sl.valLen) }

// noSlot is find's answer for an absent key.
const noSlot int32 = -1

func newShard() shard {
	return shard{index: make(map[uint64]uint32)}
}

func (sh *shard) key(i int32) []byte {
	sl := &sh.slots[i]
	return sh.arena.bytes(sl.ref, int(sl.keyLen))
}

// value returns slot i's value; the slice is capped, so appending to it cannot reach the
// arena.
func (sh *shard) value(i int32) []byte {
	sl := &sh.slots[i]
	b := sh.arena.bytes(sl.ref, sl.size())[sl.keyLen:]
	return b[:len(b):len(b)]
}

// find returns key's slot, or noSlot.
func (sh *shard) find(key string, h uint64) int32 {
	if i, ok := sh.index[h]; ok && string(sh.key(int32(i))) == key {
		return int32(i)
	}
	if len(sh.overflow) > 0 {
		if i, ok := sh.overflow[key]; ok {
			return int32(i)
		}
	}
	return noSlot
}

// put writes key = value at version, with its expiry, into slot i (the key's, from find) or,
// for noSlot, a new slot; it returns the change in resident keys.
func (sh *shard) put(key string, h uint64, i int32, value []byte, version, expiresAtMs int64) int64 {
	ref := sh.arena.add(key, value)
	next := slot{hash: h, version: version, expiresAtMs: expiresAtMs, ref: ref,
		keyLen: uint32(len(key)), valLen: uint32(len(value))}
	if expiresAtMs != 0 {
		sh.expiring++
	}
	var added int64
	if i != noSlot {
		sh.forget(&sh.slots[i])
		sh.slots[i] = next
	} else {
		i, added = sh.newSlot(next), 1
		if _, taken := sh.index[h]; taken {
			if sh.overflow == nil {
				sh.overflow = make(map[string]uint32)
			}
			sh.overflow[key] = uint32(i)
		} else {
			sh.index[h] = uint32(i)
		}
	}
	sh.compactIfWasteful()
	return added
}

// remove deletes the key in slot i and returns the change in resident keys (-1).
func (sh *shard) remove(i int32) int64 {
	sl := &sh.slots[i]
	if j, ok := sh.index[sl.hash]; ok && int32(j) == i {
		delete(sh.index, sl.hash)
		// A key that shared the hash moves up from overflow.
		for k, j := range sh.overflow {
			if sh.slots[j].hash == sl.hash {
				sh.index[sl.hash] = j
				delete(sh.overflow, k)
				break
			}
		}
	} else {
		delete(sh.overflow, string(sh.key(i)))
	}
	sh.forget(sl)
	*sl = slot{}
	sh.free = append(sh.free, uint32(i))
	sh.compactIfWasteful()
	return -1
}

// forget accounts for the bytes and TTL of a slot about to be overwritten or freed.
func (sh *shard) forget(sl *slot) {
	sh.arena.dead += sl.size()
	if sl.expiresAtMs != 0 {
		sh.expiring--
	}
}

func (sh *shard) newSlot(sl slot) int32 {
	if n := len(sh.free); n > 0 {
		i := sh.free[n-1]
		sh.free = sh.free[:n-1]
		sh.slots[i] = sl
		return int32(i)
	}
	sh.slots = append(sh.slots, sl)
	return int32(len(sh.slots) - 1)
}

// compactMinDead keeps small shards from compacting over a few dead bytes.
const compactMinDead = 1 << 20

// compactIfWasteful copies the live entries into a fresh arena once dead bytes outweigh live
// ones (and are over compactMinDead), so overwrites and deletes give their space back.
func (sh *shard) compactIfWasteful() {
	a := &sh.arena
	if a.dead < compactMinDead || a.dead < a.used-a.dead {
		return
	}
	var fresh arena
	for i := range sh.slots {
		sl := &sh.slots[i]
		if sl.version == 0 {
			continue
		}
		old := a.bytes(sl.ref, sl.size())
		var dst []byte
		sl.ref, dst = fresh.alloc(len(old))
		copy(dst, old)
	}
	*a = fresh
}

// each calls fn with every resident key (expired ones included) until it returns false; key
// and value stay valid afterwards (arena bytes are immutable).
func (sh *shard) each(fn func(key, value []byte, sl *slot) bool) {
	for i := range sh.slots {
		sl := &sh.slots[i]
		if sl.version == 0 {
			continue
		}
		b := sh.arena.bytes(sl.ref, sl.size())
		if !fn(b[:sl.keyLen:sl.keyLen], b[sl.keyLen:len(b):len(b)], sl) {
			return
		}
	}
}

// arena is append-only byte storage in chunks that hold no pointers.
type arena struct {
	chunks [][]byte // each chunk's len is its used part
	used   int      // bytes written
	dead   int      // bytes of overwritten or deleted entries
}

// arenaRef locates an entry: its chunk and offset.
type arenaRef struct {
	chunk, off uint32
}

// Chunk sizes grow with the arena, so small shards stay small and large ones have few chunks.
const (
	minChunk = 64 << 10
	maxChunk = 4 << 20
)

// add appends key ‖ value and returns where.
func (a *arena) add(key string, value []byte) arenaRef {
	ref, dst := a.alloc(len(key) + len(value))
	copy(dst[copy(dst, key):], value)
	return ref
}

// alloc reserves n bytes at the end of the arena and returns where, and the bytes to fill.
func (a *arena) alloc(n int) (arenaRef, []byte) {
	last := len(a.chunks) - 1
	if last < 0 || cap(a.chunks[last])-len(a.chunks[last]) < n {
		size := max(minChunk, min(maxChunk, a.used/4), n)
		a.chunks = append(a.chunks, make([]byte, 0, size))
		last++
	}
	c := a.chunks[last]
	ref := arenaRef{chunk: uint32(last), off: uint32(len(c))}
	a.chunks[last] = c[:len(c)+n]
	a.used += n
	return ref, a.chunks[last][ref.off:]
}

func (a *arena) bytes(ref arenaRef, n int) []byte {
	return a.chunks[ref.chunk][ref.off : int(ref.off)+n]
}
