package redisstore

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/putallkv/putallkv/pkg/store"
)

// An entry is how a key's state is stored: one Redis string at dataKey(key) holding
//
//	version   8 bytes, big-endian: the revision of its slot the key was last written at
//	expiresAt 8 bytes, big-endian: Unix ms when it expires, 0 never
//	value     the rest
//
// The apply script writes the version in front of the tail (entryTail) the engine sends, since
// only the script knows the revision; the string's own expiry (PXAT) is expiresAt, so that
// Redis drops the key when it expires. A read is one MGET of a slot's keys, and so is the
// apply script's reading of the versions it checks.
const entryHeaderBytes = 16

// entryTail is the part of a put's entry after the version: its expiry and value.
func entryTail(expiresAtMs int64, value []byte) string {
	var t strings.Builder
	t.Grow(8 + len(value))
	var at [8]byte
	binary.BigEndian.PutUint64(at[:], uint64(expiresAtMs))
	t.Write(at[:])
	t.Write(value)
	return t.String()
}

// decodeEntry turns an entry read from Redis into an item.
func decodeEntry(b []byte) (store.Item, error) {
	if len(b) < entryHeaderBytes {
		return store.Item{}, fmt.Errorf("redisstore: a key holds %d bytes, not an entry of this engine (a 16-byte header and the value)", len(b))
	}
	return store.Item{Version: int64(binary.BigEndian.Uint64(b)), ExpiresAtMs: int64(binary.BigEndian.Uint64(b[8:])),
		Value: b[entryHeaderBytes:], Found: true}, nil
}
