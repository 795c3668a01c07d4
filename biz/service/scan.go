package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// Defaults of the scan page bounds (limits.max_scan_entries, limits.max_scan_bytes), used when
// Limits leaves them 0.
const (
	DefaultMaxScanEntries = 1000
	DefaultMaxScanBytes   = 4 << 20
)

// A scan cursor, as the API hands it out, is base64url (no padding) of: a version byte (1; 2 for
// a snapshot scan), the CRC-32C of the scan's prefix (4 bytes), for a snapshot scan the id of its
// cut (16 bytes), the engine's cursor, and the CRC-32C of everything before it (4 bytes). The
// checksum refuses a cursor that was cut or changed in transit or made up; the prefix's ties it
// to its scan. A cursor only names a position in the engine's order (and a cut, by an id drawn
// at random), so a forged one that passes the checks shows nothing a scan from the start would
// not.
const (
	cursorVersion         = 1
	snapshotCursorVersion = 2
	cutIDLen              = 16
	// cursorOverhead is the bytes of a cursor beyond the engine's key: this wrapping (9), a
	// cut's id (16) and the engine's own header (at most 32).
	cursorOverhead = 9 + cutIDLen + 32
)

// Snapshot scans: the cuts the service keeps, at most maxOpenCuts at once, each until its last
// page or until no page was asked of it for cutIdle.
const (
	maxOpenCuts = 4
	cutIdle     = time.Minute
)

// openCuts are the cuts of the snapshot scans in progress, by id. The zero value is empty.
type openCuts struct {
	mu   sync.Mutex
	cuts map[[cutIDLen]byte]*openCut
}

type openCut struct {
	cut      store.Cut
	lastUsed time.Time
}

// add keeps c under a new id, after dropping the cuts idle since before now-cutIdle; false when
// maxOpenCuts are open still.
func (o *openCuts) add(c store.Cut, now time.Time) ([cutIDLen]byte, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, oc := range o.cuts {
		if now.Sub(oc.lastUsed) > cutIdle {
			delete(o.cuts, id)
		}
	}
	var id [cutIDLen]byte
	if len(o.cuts) >= maxOpenCuts {
		return id, false
	}
	rand.Read(id[:])
	if o.cuts == nil {
		o.cuts = make(map[[cutIDLen]byte]*openCut)
	}
	o.cuts[id] = &openCut{cut: c, lastUsed: now}
	return id, true
}

// get returns the cut of id, marking it used, or nil when it is unknown or idle too long.
func (o *openCuts) get(id [cutIDLen]byte, now time.Time) store.Cut {
	o.mu.Lock()
	defer o.mu.Unlock()
	oc, ok := o.cuts[id]
	if !ok || now.Sub(oc.lastUsed) > cutIdle {
		delete(o.cuts, id)
		return nil
	}
	oc.lastUsed = now
	return oc.cut
}

// drop forgets the cut of id (its scan is over).
func (o *openCuts) drop(id [cutIDLen]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.cuts, id)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeCursor is the cursor of a scan of prefix at the engine's position, in the cut of id when
// it is not nil.
func encodeCursor(prefix string, id *[cutIDLen]byte, engine []byte) string {
	if engine == nil {
		return ""
	}
	b := make([]byte, 0, len(engine)+9+cutIDLen)
	if id != nil {
		b = append(b, snapshotCursorVersion)
	} else {
		b = append(b, cursorVersion)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(prefix), castagnoli))
	if id != nil {
		b = append(b, id[:]...)
	}
	b = append(b, engine...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the cut's id (nil for a scan without one) and the engine's cursor in c
// (nil for ""), or a sentence saying why c is refused.
func (s *Service) decodeCursor(prefix, c string) (*[cutIDLen]byte, []byte, string) {
	if c == "" {
		return nil, nil, ""
	}
	const foreign = "cursor is not one this server handed out (pass next_cursor back unchanged)"
	if base64.RawURLEncoding.DecodedLen(len(c)) > s.limits.MaxKeyBytes+cursorOverhead {
		return nil, nil, "cursor is longer than any this server hands out"
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 9 || b[0] != cursorVersion && b[0] != snapshotCursorVersion {
		return nil, nil, foreign
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, nil, "cursor is damaged (pass next_cursor back unchanged)"
	}
	if binary.BigEndian.Uint32(body[1:]) != crc32.Checksum([]byte(prefix), castagnoli) {
		return nil, nil, "cursor belongs to a scan of another prefix"
	}
	rest := body[5:]
	if b[0] == cursorVersion {
		return nil, bytes.Clone(rest), ""
	}
	if len(rest) < cutIDLen {
		return nil, nil, foreign
	}
	id := new([cutIDLen]byte)
	copy(id[:], rest)
	return id, bytes.Clone(rest[cutIDLen:]), ""
}

// scanBounds returns the page bounds in force.
func (s *Service) scanBounds() (entries, size int) {
	entries, size = s.limits.MaxScanEntries, s.limits.MaxScanBytes
	if entries <= 0 {
		entries = DefaultMaxScanEntries
	}
	if size <= 0 {
		size = DefaultMaxScanBytes
	}
	return entries, size
}

// Scan returns one page of the keys that start with a prefix (see kv.ScanRequest for the
// contract).
func (s *Service) Scan(ctx context.Context, req *kv.ScanRequest) (resp *kv.ScanResponse, err error) {
	defer func() { // counting the keys returned
		n := 0
		if resp != nil {
			n = len(resp.Items)
		}
		s.metrics.observe(mScan, n, &err)
	}()
	maxEntries, maxBytes := s.scanBounds()
	switch {
	case len(req.Prefix) > s.limits.MaxKeyBytes:
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "prefix of %d bytes is longer than the longest key (%d bytes)", len(req.Prefix), s.limits.MaxKeyBytes)
	case !utf8.ValidString(req.Prefix):
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "prefix is not valid UTF-8")
	case req.Limit < 0 || int(req.Limit) > maxEntries:
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "limit must be between 1 and %d (0: %d), got %d", maxEntries, maxEntries, req.Limit)
	}
	limit := int(req.Limit)
	if limit == 0 {
		limit = maxEntries
	}
	id, cursor, why := s.decodeCursor(req.Prefix, req.Cursor)
	if why != "" {
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "%s", why)
	}
	var from store.Scanner = s.engine
	switch {
	case id != nil:
		c := s.cuts.get(*id, s.now())
		if c == nil {
			return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "the snapshot of this scan is gone (idle for over %v, or the server restarted); start the scan again", cutIdle)
		}
		from = c
	case req.Snapshot && req.Cursor == "":
		cutter, ok := s.engine.(store.Cutter)
		if !ok {
			return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "this server's engine cannot scan as of one revision (snapshot); scan without it")
		}
		c, err := cutter.Cut(ctx)
		if err != nil {
			return nil, storeError(err)
		}
		newID, ok := s.cuts.add(c, s.now())
		if !ok {
			return nil, kvError(kv.ErrorCode_RESOURCE_EXHAUSTED, "%d snapshot scans are open already; finish one, or retry once one has been idle for %v", maxOpenCuts, cutIdle)
		}
		id, from = &newID, c
	}
	page, err := from.Scan(ctx, store.ScanRequest{Prefix: req.Prefix, Cursor: cursor, Limit: limit, MaxBytes: maxBytes, KeysOnly: req.KeysOnly})
	if id != nil && err == nil && page.Next == nil {
		s.cuts.drop(*id) // the scan is over (a failed page keeps it: its client may retry)
	}
	switch {
	case errors.Is(err, store.ErrBadCursor):
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "%s", strings.TrimPrefix(err.Error(), "store: "))
	case err != nil && ctx.Err() != nil:
		return nil, kvError(kv.ErrorCode_UNAVAILABLE, "the scan page was not read before the call ended: %v", ctx.Err())
	case err != nil:
		return nil, storeError(err)
	}
	out := &kv.ScanResponse{Items: make([]*kv.Item, len(page.Items)), NextCursor: encodeCursor(req.Prefix, id, page.Next), Revision: page.Revision}
	for i, it := range page.Items {
		out.Items[i] = &kv.Item{Key: it.Key, Value: it.Value, Version: it.Version, Found: true, ExpiresAtMs: it.ExpiresAtMs}
	}
	return out, nil
}
