package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
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

// A scan cursor, as the API hands it out, is base64url (no padding) of: a version byte (1), the
// CRC-32C of the scan's prefix (4 bytes), the engine's cursor, and the CRC-32C of everything
// before it (4 bytes). The checksum refuses a cursor that was cut or changed in transit or made
// up; the prefix's ties it to its scan. A cursor only names a position in the engine's order, so
// a forged one that passes the checks shows nothing a scan from the start would not.
const (
	cursorVersion = 1
	// cursorOverhead is the bytes of a cursor beyond the engine's key: this wrapping (9) and
	// the engine's own header (at most 32).
	cursorOverhead = 9 + 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeCursor(prefix string, engine []byte) string {
	if engine == nil {
		return ""
	}
	b := make([]byte, 0, len(engine)+9)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(prefix), castagnoli))
	b = append(b, engine...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the engine's cursor in c (nil for ""), or a sentence saying why c is
// refused.
func (s *Service) decodeCursor(prefix, c string) ([]byte, string) {
	if c == "" {
		return nil, ""
	}
	if base64.RawURLEncoding.DecodedLen(len(c)) > s.limits.MaxKeyBytes+cursorOverhead {
		return nil, "cursor is longer than any this server hands out"
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 9 || b[0] != cursorVersion {
		return nil, "cursor is not one this server handed out (pass next_cursor back unchanged)"
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, "cursor is damaged (pass next_cursor back unchanged)"
	}
	if binary.BigEndian.Uint32(body[1:]) != crc32.Checksum([]byte(prefix), castagnoli) {
		return nil, "cursor belongs to a scan of another prefix"
	}
	return bytes.Clone(body[5:]), ""
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
	cursor, why := s.decodeCursor(req.Prefix, req.Cursor)
	if why != "" {
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "%s", why)
	}
	page, err := s.engine.Scan(ctx, store.ScanRequest{Prefix: req.Prefix, Cursor: cursor, Limit: limit, MaxBytes: maxBytes, KeysOnly: req.KeysOnly})
	switch {
	case errors.Is(err, store.ErrBadCursor):
		return nil, kvError(kv.ErrorCode_INVALID_ARGUMENT, "%s", strings.TrimPrefix(err.Error(), "store: "))
	case err != nil && ctx.Err() != nil:
		return nil, kvError(kv.ErrorCode_UNAVAILABLE, "the scan page was not read before the call ended: %v", ctx.Err())
	case err != nil:
		return nil, storeError(err)
	}
	out := &kv.ScanResponse{Items: make([]*kv.Item, len(page.Items)), NextCursor: encodeCursor(req.Prefix, page.Next), Revision: page.Revision}
	for i, it := range page.Items {
		out.Items[i] = &kv.Item{Key: it.Key, Value: it.Value, Version: it.Version, Found: true, ExpiresAtMs: it.ExpiresAtMs}
	}
	return out, nil
}
