package store

import (
	"encoding/binary"
	"strings"
	"sync"
)

// A shard keeps its keys the way bigcache and fastcache do, so that millions of resident keys
// give the Go GC nothing to chase: every entry (a small header, the key, the value) lives in a
// few large byte chunks (the arena), and the index (a hashIndex) maps the key's 64-bit hash
// to the entry's place in the arena, with no pointers either. A lookup touches the index and then one
// spot of the arena, where the header and the key (which verifies the hash's match) sit
// together. Overwrites and deletes leave dead bytes behind; once they outweigh the live ones
// the shard compacts its arena, copying the live entries into fresh chunks.
//
// Arena bytes are never modified once written, so a value handed to a reader stays valid
// (the GC keeps a dropped chunk alive while a reader holds a slice of it).
type shard struct {
	mu sync.RWMutex
	// index maps a key's hash to its entry. Two keys with one 64-bit hash (vanishingly rare)
	// are handled by overflow, which holds every key whose hash another key holds in index.
	index    hashIndex
	overflow map[string]overflowEntry
	arena    arena
	// expiring counts keys with a TTL, so the sweeper skips shards that have none.
	expiring int
}

type overflowEntry struct {
	ref  arenaRef
	hash uint64
}

// entryHeader starts every entry in the arena: version and expiry (Unix ms, 0 = never), then
// the key's and the value's lengths (uint64, uint64, uint32, uint32, little-endian).
type entryHeader struct {
	version     int64
	expiresAtMs int64
	keyLen      uint32
	valLen      uint32
}

const headerLen = 24

func (e entryHeader) expired(nowMs int64) bool {
	return e.expiresAtMs != 0 && nowMs >= e.expiresAtMs
}

func (e entryHeader) size() int { return headerLen + int(e.keyLen) + int(e.valLen) }

// loc is where find found a key: its entry, and whether the index or overflow holds it.
type loc struct {
	ref   arenaRef
	where uint8
}

const (
	absent uint8 = iota
	inIndex
	inOverflow
)

func (l loc) found() bool { return l.where != absent }

func newShard() shard { return shard{} }

func (sh *shard) header(ref arenaRef) entryHeader { return sh.arena.header(ref) }

// entry returns the header, key and value at ref; key and value are capped slices, so
// appending to them cannot reach the arena.
func (sh *shard) entry(ref arenaRef) (h entryHeader, key, value []byte) { return sh.arena.entry(ref) }

func (a *arena) header(ref arenaRef) entryHeader { return readHeader(a.bytes(ref, headerLen)) }

// readHeader decodes the entry header at the start of b.
func readHeader(b []byte) entryHeader {
	return entryHeader{
		version:     int64(binary.LittleEndian.Uint64(b)),
		expiresAtMs: int64(binary.LittleEndian.Uint64(b[8:])),
		keyLen:      binary.LittleEndian.Uint32(b[16:]),
		valLen:      binary.LittleEndian.Uint32(b[20:]),
	}
}

func (a *arena) entry(ref arenaRef) (h entryHeader, key, value []byte) {
	h = a.header(ref)
	b := a.bytes(ref, h.size())
	k := headerLen + int(h.keyLen)
	return h, b[headerLen:k:k], b[k:len(b):len(b)]
}

// find locates key, whose hash is h.
func (sh *shard) find(key string, h uint64) loc {
	ref, ok := sh.index.get(h)
	return sh.verify(key, ref, ok)
}

// verify completes find given what the index holds under the key's hash (ref, if indexed):
// the entry there if it is key's, else key's entry in overflow, if any.
func (sh *shard) verify(key string, ref arenaRef, indexed bool) loc {
	if indexed {
		if _, k, _ := sh.entry(ref); string(k) == key {
			return loc{ref, inIndex}
		}
	}
	if len(sh.overflow) > 0 {
		if o, ok := sh.overflow[key]; ok {
			return loc{o.ref, inOverflow}
		}
	}
	return loc{}
}

// put writes key = value at version, with its expiry, where l (from find) says the key is,
// and returns the change in resident keys. The caller compacts afterwards (compactIfWasteful).
func (sh *shard) put(key string, h uint64, l loc, value []byte, version, expiresAtMs int64) int64 {
	ref := sh.arena.add(entryHeader{version: version, expiresAtMs: expiresAtMs,
		keyLen: uint32(len(key)), valLen: uint32(len(value))}, key, value)
	return sh.place(key, h, l, ref, expiresAtMs)
}

// place makes the entry at ref (of key, hash h, expiring at expiresAtMs) key's, where l (from
// find) says the key is, and returns the change in resident keys. Overflow keeps a copy of key:
// recovery's keys alias whole log segments.
func (sh *shard) place(key string, h uint64, l loc, ref arenaRef, expiresAtMs int64) int64 {
	if expiresAtMs != 0 {
		sh.expiring++
	}
	var added int64
	switch l.where {
	case inIndex:
		sh.forget(l.ref)
		sh.index.set(h, ref)
	case inOverflow:
		sh.forget(l.ref)
		sh.overflow[strings.Clone(key)] = overflowEntry{ref, h}
	default:
		added = 1
		if _, taken := sh.index.get(h); taken {
			if sh.overflow == nil {
				sh.overflow = make(map[string]overflowEntry)
			}
			sh.overflow[strings.Clone(key)] = overflowEntry{ref, h}
		} else {
			sh.index.set(h, ref)
		}
	}
	return added
}

// adopt makes the entry at ref (header hdr, key, hash h), which the arena holds already, key's
// unless the shard holds key at a version as high, and returns the change in resident keys and
// in bytes (as growth counts them). It is how a version 2 snapshot is restored.
func (sh *shard) adopt(key []byte, h uint64, ref arenaRef, hdr entryHeader) (keys, bytes int64) {
	sh.arena.used += hdr.size()
	if _, taken := sh.index.get(h); !taken { // the usual case: a key not seen yet
		if hdr.expiresAtMs != 0 {
			sh.expiring++
		}
		sh.index.set(h, ref)
		return 1, hdr.cost()
	}
	k := string(key)
	l := sh.find(k, h)
	if !l.found() { // another key with the same hash
		return sh.place(k, h, l, ref, hdr.expiresAtMs), hdr.cost()
	}
	old := sh.header(l.ref)
	if old.version >= hdr.version {
		sh.arena.dead += hdr.size()
		return 0, 0
	}
	return sh.place(k, h, l, ref, hdr.expiresAtMs), hdr.cost() - old.cost()
}

// remove deletes key (hash h, found at l) and returns the change in resident keys (-1).
func (sh *shard) remove(key string, h uint64, l loc) int64 {
	sh.forget(l.ref)
	if l.where == inOverflow {
		delete(sh.overflow, key)
	} else {
		sh.index.del(h)
		for k, o := range sh.overflow { // a key that shared the hash moves up
			if o.hash == h {
				sh.index.set(h, o.ref)
				delete(sh.overflow, k)
				break
			}
		}
	}
	return -1
}

// forget accounts for the bytes and TTL of an entry about to be replaced or deleted.
func (sh *shard) forget(ref arenaRef) {
	h := sh.header(ref)
	sh.arena.dead += h.size()
	if h.expiresAtMs != 0 {
		sh.expiring--
	}
}

// compactMinDead keeps small shards from compacting over a few dead bytes. It is small, so
// that a store holds at most about twice its live bytes plus this much per shard: with 1 MiB
// a store of 100 000 keys (10 MB live) under overwrites grew to 480 MB of heap. Compaction
// stays cheap at any threshold: it copies only live bytes, no more than the dead bytes
// written since the last one.
const compactMinDead = minChunk

// compactIfWasteful copies the live entries into a fresh arena once dead bytes outweigh live
// ones (and are over compactMinDead), so overwrites and deletes give their space back. It
// moves entries, so every loc found before it is stale: writers call it once they are done
// with the shard.
func (sh *shard) compactIfWasteful() {
	a := &sh.arena
	if a.dead < compactMinDead || a.dead < a.used-a.dead {
		return
	}
	// The fresh arena's first chunk holds the live entries and room for more writes: on a small
	// shard, all of them until the next compaction (compactMinDead, plus a little for the batch
	// that crosses the line), so that a compaction cycle allocates one chunk rather than two
	// with the second mostly unused; on a large one, as much as alloc would add (a quarter of
	// the live bytes), so that the zeroing is not all done at once.
	live := a.used - a.dead
	room := max(compactMinDead+compactMinDead/32, live/4)
	fresh := arena{chunks: [][]byte{make([]byte, 0, min(maxChunk, live+room))}}
	// The entries lie all over the old chunks, in the index's (hash) order, so each is a cache
	// miss on a large shard: a group's headers are loaded in one loop, so that their misses are
	// in flight together, and then its entries (the rest of each) in another, before any is
	// copied.
	var sizes [moveGroup]int
	move := func(refs []arenaRef) {
		for i, ref := range refs {
			sizes[i] = a.header(ref).size()
		}
		var touched byte
		for i, ref := range refs {
			touched ^= a.bytes(ref, sizes[i])[sizes[i]-1]
		}
		a.touched = touched
		for i, ref := range refs {
			to, dst := fresh.alloc(sizes[i])
			copy(dst, a.bytes(ref, sizes[i]))
			refs[i] = to
		}
	}
	sh.index.move(move)
	for k, o := range sh.overflow {
		refs := []arenaRef{o.ref}
		move(refs)
		sh.overflow[k] = overflowEntry{refs[0], o.hash}
	}
	*a = fresh
}

// residentKey is a key as each reports it.
type residentKey struct {
	hash       uint64
	key, value []byte
	header     entryHeader
	loc        loc
}

// each calls fn with every resident key (expired ones included); the slices stay valid
// afterwards (arena bytes are immutable). fn must not change the shard.
func (sh *shard) each(fn func(residentKey)) {
	visit := func(h uint64, l loc) {
		hdr, k, v := sh.entry(l.ref)
		fn(residentKey{hash: h, key: k, value: v, header: hdr, loc: l})
	}
	sh.index.each(func(h uint64, ref arenaRef) { visit(h, loc{ref, inIndex}) })
	for _, o := range sh.overflow {
		visit(o.hash, loc{o.ref, inOverflow})
	}
}

// len returns the number of resident keys.
func (sh *shard) len() int { return sh.index.len() + len(sh.overflow) }

// arena is append-only byte storage in chunks that hold no pointers.
type arena struct {
	chunks [][]byte // each chunk's len is its used part
	used   int      // bytes written
	dead   int      // bytes of replaced or deleted entries
	// touched folds the bytes compaction loads only to bring them into the cache; keeping it
	// makes the loads count.
	touched byte
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

// add appends an entry and returns where.
func (a *arena) add(h entryHeader, key string, value []byte) arenaRef {
	ref, dst := a.alloc(h.size())
	putEntry(dst, h, key, value)
	return ref
}

// putEntry writes the entry (header h, key, value) to dst, which holds h.size() bytes: the
// layout of the arena, which version 2 snapshots share.
func putEntry[K string | []byte](dst []byte, h entryHeader, key K, value []byte) {
	binary.LittleEndian.PutUint64(dst, uint64(h.version))
	binary.LittleEndian.PutUint64(dst[8:], uint64(h.expiresAtMs))
	binary.LittleEndian.PutUint32(dst[16:], h.keyLen)
	binary.LittleEndian.PutUint32(dst[20:], h.valLen)
	copy(dst[headerLen+copy(dst[headerLen:], key):], value)
}

// adopt appends chunk, bytes of entries that other shards may share, to the arena without
// copying it, and returns its chunk number. The chunk is full (its capacity is its length), so
// alloc never writes into it.
func (a *arena) adopt(chunk []byte) uint32 {
	a.chunks = append(a.chunks, chunk[:len(chunk):len(chunk)])
	return uint32(len(a.chunks) - 1)
}

// alloc reserves n bytes at the end of the arena and returns where, and the bytes to fill.
func (a *arena) alloc(n int) (arenaRef, []byte) {
	last := len(a.chunks) - 1
	if last < 0 || cap(a.chunks[last])-len(a.chunks[last]) < n {
		size := max(minChunk, min(maxChunk, (a.used-a.dead)/4), n) // sized by the live bytes
		a.chunks = append(a.chunks, make([]byte, 0, size))
		last++
	}
	c := a.chunks[last]
	ref := arenaRef{chunk: uint32(last), off: uint32(len(c))}
	a.chunks[last] = c[:len(c)+n]
	a.used += n
	return ref, a.chunks[last][ref.off : int(ref.off)+n]
}

func (a *arena) bytes(ref arenaRef, n int) []byte {
	return a.chunks[ref.chunk][ref.off : int(ref.off)+n]
}
