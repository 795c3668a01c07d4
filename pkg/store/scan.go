package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
)

// ScanRequest asks an engine for one page of the keys that start with Prefix.
type ScanRequest struct {
	// Prefix selects the keys; empty selects every key.
	Prefix string
	// Cursor is where the page starts: nil for the first page, else the Next of the page before,
	// unchanged. It is the engine's own encoding of a position; an engine refuses one it cannot
	// read with an error matching ErrBadCursor.
	Cursor []byte
	// Limit is the most items the page holds (positive).
	Limit int
	// MaxBytes bounds the page's keys plus values (positive): an item that would cross it ends
	// the page, unless it is the page's first.
	MaxBytes int
	// KeysOnly leaves the items' values out (and out of MaxBytes).
	KeysOnly bool
}

// ScanItem is one key of a scan page, as of the moment the engine read it.
type ScanItem struct {
	Key string
	// Value is shared with the engine: the caller must not modify it. Nil with KeysOnly.
	Value       []byte
	Version     int64
	ExpiresAtMs int64
}

// ScanPage is one page of a scan.
type ScanPage struct {
	Items []ScanItem
	// Next continues the scan; nil when the scan is over. A page may hold fewer items than the
	// limit, even none, and still have a Next.
	Next []byte
	// Revision is a revision every item's version is at or below: the store's revision once the
	// page was read (on an engine with per-slot revisions, the slot's when the page read one
	// slot, else 0).
	Revision int64
}

// ErrBadCursor is what an engine's Scan returns (wrapped with a sentence) for a cursor it did not
// make, or made before it restarted.
var ErrBadCursor = errors.New("store: invalid scan cursor")

// CheckScan reports whether req's bounds are usable; engines call it first.
func CheckScan(req ScanRequest) error {
	if req.Limit <= 0 || req.MaxBytes <= 0 {
		return fmt.Errorf("store: scan limit %d and max bytes %d must be positive", req.Limit, req.MaxBytes)
	}
	return nil
}

// scanVisitBudget bounds the resident keys one page of a Memory scan looks at: past it, once a
// shard is done, the page ends (maybe short, or empty) with a cursor at the next shard, so that a
// prefix few keys match does not make one call walk the whole store.
const scanVisitBudget = 1 << 20

// A Memory scan walks the keys in the order of their 64-bit hash (then of the key's bytes, for
// the rare keys sharing a hash): the shard is the hash's top bits, so the walk goes shard by
// shard, and a page holds one shard's read lock at a time, only to copy that shard's index (see
// shardView). The position, and so the cursor, is the last key returned: every key
// present for the whole scan is returned exactly once whatever is written meanwhile, since
// writes do not move a key in this order. The hash is seeded per process, so a cursor is valid
// only in the process that made it: it carries a tag of the seed.
//
// A Memory cursor is: version byte (1), seed tag (8 bytes), hash (8 bytes, big-endian), a kind
// byte (0: every key from this hash on; 1: the keys after key at this hash), then the key.
const (
	memCursorVersion = 1
	memCursorHeader  = 1 + 8 + 8 + 1
	fromHash         = 0
	afterKey         = 1
)

// scanScratch is a page's working memory, pooled so that a scan's pages allocate little beyond
// the items they return (the garbage they made slowed the writers beside them).
type scanScratch struct {
	view  shardView
	cands []residentKey
	order []scanRef
}

var scanScratchPool = sync.Pool{New: func() any { return new(scanScratch) }}

// shardView is what a scan reads of a shard: the place and hash of each of its entries, and its
// arena's chunks, copied under the shard's read lock, which is then released. The lock is held
// for a copy of the index (16 bytes a slot), not for a walk of the entries, which reads each
// one's header and key from the arena, and a reader descheduled meanwhile holds no writer up.
// The entries stay readable, as of the copy, with the lock released: arena bytes are never
// modified once written, writers append beyond the copied chunks' lengths, and a compaction
// leaves the old chunks to the garbage collector, which keeps them while the view holds them.
type shardView struct {
	refs  []viewRef
	arena arena
}

// viewRef is one entry of a shardView.
type viewRef struct {
	hash uint64
	ref  arenaRef
}

// copyOf fills v with sh's entries; the caller holds sh's lock.
func (v *shardView) copyOf(sh *shard) {
	v.refs = slices.Grow(v.refs[:0], sh.len())
	for _, sl := range sh.index.slots {
		if sl.chunk != 0 {
			v.refs = append(v.refs, viewRef{sl.hash, sl.ref()})
		}
	}
	for _, o := range sh.overflow {
		v.refs = append(v.refs, viewRef{o.hash, o.ref})
	}
	v.arena.chunks = append(v.arena.chunks[:0], sh.arena.chunks...)
}

// scanRef is a scan candidate in the order it sorts in: its hash, and its index among the shard's
// candidates.
type scanRef struct {
	hash uint64
	idx  int32
}

// scanPosition is where a Memory scan resumes.
type scanPosition struct {
	hash  uint64
	key   []byte
	after bool // resume after (hash, key); else at hash, every key
	start bool // from the very beginning
}

// admits reports whether the key at (h, key) comes after the position.
func (p scanPosition) admits(h uint64, key []byte) bool {
	switch {
	case p.start:
		return true
	case h != p.hash:
		return h > p.hash
	case !p.after:
		return true
	}
	return bytes.Compare(key, p.key) > 0
}

func (s *Memory) seedTag() uint64 { return maphash.String(s.seed, "putallkv scan cursor") }

func (s *Memory) encodeCursor(h uint64, key []byte, kind byte) []byte {
	c := make([]byte, memCursorHeader, memCursorHeader+len(key))
	c[0] = memCursorVersion
	binary.BigEndian.PutUint64(c[1:], s.seedTag())
	binary.BigEndian.PutUint64(c[9:], h)
	c[17] = kind
	return append(c, key...)
}

func (s *Memory) decodeCursor(c []byte) (scanPosition, error) {
	if c == nil {
		return scanPosition{start: true}, nil
	}
	switch {
	case len(c) < memCursorHeader || c[0] != memCursorVersion || c[17] > afterKey:
		return scanPosition{}, fmt.Errorf("%w: not a cursor of this engine", ErrBadCursor)
	case binary.BigEndian.Uint64(c[1:]) != s.seedTag():
		return scanPosition{}, fmt.Errorf("%w: the cursor was made before the server restarted; start the scan again", ErrBadCursor)
	case c[17] == fromHash && len(c) > memCursorHeader:
		return scanPosition{}, fmt.Errorf("%w: not a cursor of this engine", ErrBadCursor)
	}
	return scanPosition{hash: binary.BigEndian.Uint64(c[9:]), key: c[memCursorHeader:], after: c[17] == afterKey}, nil
}

// Scan implements Engine. Each item is the key's state when its shard was read; expired keys
// are left out.
func (s *Memory) Scan(ctx context.Context, req ScanRequest) (ScanPage, error) {
	return s.scanPage(ctx, req, scanVisitBudget)
}

// scanPage is Scan with the page ending, once a shard is done, after budget resident keys.
func (s *Memory) scanPage(ctx context.Context, req ScanRequest, budget int) (ScanPage, error) {
	live := func(i int, v *shardView) (*shardView, int64) {
		sh := &s.shards[i]
		sh.mu.RLock()
		v.copyOf(sh)
		sh.mu.RUnlock()
		return v, s.now().UnixMilli()
	}
	return s.scanViews(ctx, req, budget, live, s.rev.Load)
}

// scanViews builds a page from the shards' views: shard(i, scratch) returns shard i's view (in
// scratch, or one of its own) and the time expiry is judged at; revision gives the page's.
func (s *Memory) scanViews(ctx context.Context, req ScanRequest, budget int,
	shard func(int, *shardView) (*shardView, int64), revision func() int64) (ScanPage, error) {
	if err := CheckScan(req); err != nil {
		return ScanPage{}, err
	}
	pos, err := s.decodeCursor(req.Cursor)
	if err != nil {
		return ScanPage{}, err
	}
	prefix := []byte(req.Prefix)
	var page ScanPage
	sc := scanScratchPool.Get().(*scanScratch)
	defer scanScratchPool.Put(sc)
	cands, order := sc.cands[:0], sc.order[:0]
	defer func() { sc.cands, sc.order = cands[:0], order[:0] }()
	size, visited := 0, 0
	for i := int(pos.hash >> s.shift); i < len(s.shards); i++ {
		if err := ctx.Err(); err != nil {
			return ScanPage{}, err
		}
		view, nowMs := shard(i, &sc.view)
		visited += len(view.refs)
		cands = cands[:0]
		for _, r := range view.refs {
			hdr, key, value := view.arena.entry(r.ref)
			if pos.admits(r.hash, key) && !hdr.expired(nowMs) && bytes.HasPrefix(key, prefix) {
				cands = append(cands, residentKey{hash: r.hash, key: key, value: value, header: hdr})
			}
		}
		// The candidates are sorted through small (hash, index) pairs: sorting the candidates
		// themselves, 88 bytes each, took half of a scan's time.
		order = order[:0]
		for j := range cands {
			order = append(order, scanRef{cands[j].hash, int32(j)})
		}
		slices.SortFunc(order, func(a, b scanRef) int {
			if c := cmp.Compare(a.hash, b.hash); c != 0 {
				return c
			}
			return bytes.Compare(cands[a.idx].key, cands[b.idx].key)
		})
		for _, ref := range order {
			rk := &cands[ref.idx]
			n := len(rk.key)
			if !req.KeysOnly {
				n += len(rk.value)
			}
			if len(page.Items) == req.Limit || len(page.Items) > 0 && size+n > req.MaxBytes {
				last := page.Items[len(page.Items)-1].Key
				page.Next = s.encodeCursor(maphash.String(s.seed, last), []byte(last), afterKey)
				page.Revision = revision()
				return page, nil
			}
			it := ScanItem{Key: string(rk.key), Version: rk.header.version, ExpiresAtMs: rk.header.expiresAtMs}
			if !req.KeysOnly {
				it.Value = rk.value
			}
			page.Items = append(page.Items, it)
			size += n
		}
		if visited >= budget && i+1 < len(s.shards) {
			page.Next = s.encodeCursor(uint64(i+1)<<s.shift, nil, fromHash)
			page.Revision = revision()
			return page, nil
		}
	}
	page.Revision = revision()
	return page, nil
}

// A Scanner pages through keys: an Engine, or a Cut.
type Scanner interface {
	Scan(ctx context.Context, req ScanRequest) (ScanPage, error)
}

// ScanAll follows a scan of e from req.Cursor to its end, calling fn with each page, and stops
// at the first error of e or of fn.
func ScanAll(ctx context.Context, e Scanner, req ScanRequest, fn func(ScanPage) error) error {
	for {
		page, err := e.Scan(ctx, req)
		if err != nil {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		if page.Next == nil {
			return nil
		}
		req.Cursor = page.Next
	}
}

// A Cutter is an engine that can cut: take every key as of one revision, then page through that
// state as Scan does, with writes going on meanwhile. Memory and Durable are Cutters; the
// redis_cluster engine, whose revisions are per slot, is not.
type Cutter interface {
	Cut(ctx context.Context) (Cut, error)
}

// A Cut is the store's keys as of one revision. Its Scan pages like Engine.Scan (the same
// requests and cursors), but every page shows that one revision: a batch is in it whole or not
// at all. It pins what it shows in memory until it is dropped.
type Cut interface {
	Scan(ctx context.Context, req ScanRequest) (ScanPage, error)
	// Revision is the revision of the cut: every write up to it is in the cut, none after.
	Revision() int64
}

// memoryCut is a Memory's Cut: a view of every shard, copied with every shard read-locked at
// once, so no batch was between its shards (writers wait for the copy: 16 bytes a key, about
// 10 ms for a million keys). Expiry is judged at the time of the cut.
type memoryCut struct {
	mem   *Memory
	views []shardView
	rev   int64
	nowMs int64
}

// Cut implements Cutter.
func (s *Memory) Cut(context.Context) (Cut, error) {
	c := &memoryCut{mem: s, views: make([]shardView, len(s.shards))}
	for i := range s.shards { // ascending, as writers lock: no deadlock
		s.shards[i].mu.RLock()
	}
	for i := range s.shards {
		c.views[i].copyOf(&s.shards[i])
	}
	// Revisions are drawn under the shard locks: with every shard locked, none is in flight.
	c.rev, c.nowMs = s.rev.Load(), s.now().UnixMilli()
	for i := range s.shards {
		s.shards[i].mu.RUnlock()
	}
	return c, nil
}

func (c *memoryCut) Scan(ctx context.Context, req ScanRequest) (ScanPage, error) {
	view := func(i int, _ *shardView) (*shardView, int64) { return &c.views[i], c.nowMs }
	return c.mem.scanViews(ctx, req, scanVisitBudget, view, c.Revision)
}

func (c *memoryCut) Revision() int64 { return c.rev }

// Cut implements Cutter: the Memory's cut, returned once every write in it is durable.
func (d *Durable) Cut(ctx context.Context) (Cut, error) {
	c, err := d.mem.Cut(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.readDurable(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

var _ Cutter = (*Durable)(nil)
