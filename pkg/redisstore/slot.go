package redisstore

import (
	"strconv"
	"strings"
	"sync"
)

// Slots is how many hash slots a Redis Cluster has.
const Slots = 16384

// Slot returns the hash slot Redis Cluster puts key in: CRC16 (XMODEM) of the key's hash tag
// (the part between its first '{' and the first '}' after it, when that part is not empty) or
// else of the whole key, modulo 16384.
func Slot(key string) int {
	if tag, ok := hashTag(key); ok {
		return int(crc16(0, tag) % Slots)
	}
	return int(crc16(0, key) % Slots)
}

// hashTag is key's hash tag, if it has one.
func hashTag(key string) (string, bool) {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j], true
		}
	}
	return "", false
}

// dataSlot is Slot(dataKey(key)), without building the key: dataPrefix holds no brace, so the
// tag, if any, is key's own.
func dataSlot(key string) int {
	if tag, ok := hashTag(key); ok {
		return int(crc16(0, tag) % Slots)
	}
	return int(crc16(crc16(0, dataPrefix), key) % Slots)
}

// crc16Table is CRC-16/XMODEM's table of one byte's effect.
var crc16Table = func() (t [256]uint16) {
	for b := range t {
		crc := uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[b] = crc
	}
	return t
}()

// crc16 continues crc, a CRC-16/XMODEM (polynomial 0x1021, initial value 0: the checksum Redis
// Cluster hashes keys with), over s.
func crc16(crc uint16, s string) uint16 {
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// slotTags holds, for each slot, a short hash tag that Redis puts in that slot: the engine
// names a slot's own keys (its revision counter) with it, so that a script touching a slot's
// data keys touches only keys of that slot.
var slotTags = sync.OnceValue(func() []string {
	tags := make([]string, Slots)
	for n, left := int64(0), Slots; left > 0; n++ {
		t := strconv.FormatInt(n, 36)
		if s := Slot(t); tags[s] == "" {
			tags[s] = t
			left--
		}
	}
	return tags
})

// revisionKeys holds every slot's revisionKey, built once: every write names its slots' counters.
var revisionKeys = sync.OnceValue(func() []string {
	keys := make([]string, Slots)
	for s, tag := range slotTags() {
		keys[s] = "rev{" + tag + "}"
	}
	return keys
})

// revisionKey is the key of slot's revision counter.
func revisionKey(slot int) string { return revisionKeys()[slot] }

// recordKey is the key of the idempotency record of request_id id in slot: a call that spans
// slots keeps one record in each, written with that slot's writes.
func recordKey(slot int, id string) string { return "idem{" + slotTags()[slot] + "}" + id }

// dataPrefix is put before every user key: the engine's keys never collide with its counters
// (which start "rev{") or records ("idem{"), and a prefix without braces keeps a key's hash tag.
const dataPrefix = "k:"

func dataKey(key string) string { return dataPrefix + key }
