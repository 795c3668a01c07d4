package gateway

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// The fast path of the batch bodies' decoding. A request body has one of three small shapes,
// so a reader written for exactly those shapes decodes them without reflection, in a few
// allocations, and without encoding/json's per-token state machine (60–70 µs for a putAll of
// 16 entries before; see docs/performance.md).
//
// It is strict in one direction only: it accepts a body solely when it is certain that
// encoding/json with DisallowUnknownFields, behind checkText, accepts the same body and
// decodes it to the same request. Anything else (a syntax or type error, an unknown field,
// but also what encoding/json would take and this reader does not bother with: a field named
// in another case or with escapes, a field given twice, null, a number out of int64's range)
// falls through to decodeJSON, which refuses with the sentence callers have always had, or
// decodes the rare odd body slowly. So no refusal changes by a byte, and a body this reader
// accepts is one the old decoder accepted; FuzzFastDecoders checks both against a copy of
// the old decoder.

// jsonReader reads JSON tokens from b, starting at i.
type jsonReader struct {
	b []byte
	i int
}

// ws skips JSON whitespace.
func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// eat skips whitespace and then c, reporting whether c was there.
func (r *jsonReader) eat(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// more reads what follows a member or element: ',' (true) or close (false, done); anything
// else is not ok.
func (r *jsonReader) more(close byte) (more, ok bool) {
	r.ws()
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case ',':
			r.i++
			return true, true
		case close:
			r.i++
			return false, true
		}
	}
	return false, false
}

// jsonString is a string token as it stands in the body, between its quotes.
type jsonString struct {
	raw     []byte
	escaped bool // raw holds backslash escapes; see unescape
}

// str reads a string token. It is ok only for a terminated string without control
// characters whose bytes are UTF-8; its escapes are checked when unescaped.
func (r *jsonReader) str() (jsonString, bool) {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return jsonString{}, false
	}
	start, escaped, ascii := r.i+1, false, true
	for j := start; j < len(r.b); j++ {
		for j+8 <= len(r.b) && plain8(binary.LittleEndian.Uint64(r.b[j:])) {
			j += 8
		}
		if j == len(r.b) {
			break
		}
		switch c := r.b[j]; {
		case c == '"':
			raw := r.b[start:j]
			r.i = j + 1
			return jsonString{raw: raw, escaped: escaped}, ascii || utf8.Valid(raw)
		case c == '\\':
			// The escaped byte cannot end the string; a malformed escape fails unescape.
			escaped = true
			j++
		case c < 0x20:
			return jsonString{}, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return jsonString{}, false
}

// plain8 reports whether none of the 8 bytes in w is '"', '\\', a control character or
// outside ASCII: those str must look at one by one. It may say false for plain bytes too.
func plain8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	control := w - 0x20*ones // a byte under 0x20 borrows, setting its high bit
	quote := (w ^ '"'*ones) - ones
	backslash := (w ^ '\\'*ones) - ones
	return (control|quote|backslash|w)&highs == 0
}

// name reads an object member's name and its colon. Names with escapes are not ok: the
// shapes' field names need none.
func (r *jsonReader) name() ([]byte, bool) {
	s, ok := r.str()
	if !ok || s.escaped || !r.eat(':') {
		return nil, false
	}
	return s.raw, true
}

// int reads an integer token that fits int64, as encoding/json decodes one into an int64.
// A fraction, an exponent or overflow is not ok.
func (r *jsonReader) int() (int64, bool) {
	r.ws()
	j, neg := r.i, false
	if j < len(r.b) && r.b[j] == '-' {
		neg = true
		j++
	}
	start := j
	var v uint64
	for ; j < len(r.b) && r.b[j] >= '0' && r.b[j] <= '9'; j++ {
		if j-start >= 18 { // 19 digits and more may overflow: leave them to the slow path
			return 0, false
		}
		v = v*10 + uint64(r.b[j]-'0')
	}
	switch {
	case j == start, r.b[start] == '0' && j-start > 1: // no digits; a leading zero
		return 0, false
	case j < len(r.b) && (r.b[j] == '.' || r.b[j] == 'e' || r.b[j] == 'E'):
		return 0, false
	}
	r.i = j
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

// end reports whether only whitespace is left.
func (r *jsonReader) end() bool {
	r.ws()
	return r.i == len(r.b)
}

// unescape appends s's text to dst, as encoding/json decodes it after checkText: not ok for
// a malformed escape or an escaped surrogate that is not half of a pair (checkText refuses
// those).
func unescape(dst []byte, s jsonString) ([]byte, bool) {
	if !s.escaped {
		return append(dst, s.raw...), true
	}
	raw := s.raw
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return dst, false
		}
		switch e := raw[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r1, ok := hex4(raw[i+2:])
			if !ok {
				return dst, false
			}
			if utf16.IsSurrogate(r1) {
				r2, ok := rune(0), false
				if len(raw) >= i+12 && raw[i+6] == '\\' && raw[i+7] == 'u' {
					r2, ok = hex4(raw[i+8:])
				}
				if r1 >= 0xdc00 || !ok || r2 < 0xdc00 || r2 > 0xdfff {
					return dst, false
				}
				r1 = utf16.DecodeRune(r1, r2)
				i += 6
			}
			dst = utf8.AppendRune(dst, r1)
			i += 6
			continue
		default:
			return dst, false
		}
		i += 2
	}
	return dst, true
}

// hex4 is the code unit of the four hex digits b starts with.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// fastMode reads a mode string as writeMode does; not ok for an unknown or escaped name
// (writeMode, on the slow path, words the refusal).
func (r *jsonReader) mode() (kv.WriteMode, bool) {
	s, ok := r.str()
	if !ok || s.escaped {
		return 0, false
	}
	switch string(s.raw) {
	case "atomic", "ATOMIC":
		return kv.WriteMode_ATOMIC, true
	case "best_effort", "BEST_EFFORT":
		return kv.WriteMode_BEST_EFFORT, true
	}
	return 0, false
}

// fields records which members an object has given, so that a repeat (which encoding/json
// merges in ways not worth copying) goes to the slow path.
type fields uint8

// first marks f given, reporting whether it was not before.
func (s *fields) first(f fields) bool {
	if *s&f != 0 {
		return false
	}
	*s |= f
	return true
}

const (
	fieldMode fields = 1 << iota
	fieldEntries
	fieldKeys
	fieldKey
	fieldValue
	fieldValueBase64
	fieldExpectedVersion
	fieldTTL
)

// rawEntry is a batch entry as read, before its strings are decoded.
type rawEntry struct {
	key             jsonString
	keyAt           [2]int // where the decoded key lies in its textArena's keys
	value           jsonString
	base64          bool // value is value_base64
	expectedVersion *int64
	ttlMs           *int64
}

// entries reads the array of entries; put says whether they are putAll's (value,
// value_base64, ttl_ms) or deleteAll's (key and expected_version only). Not ok when an entry
// is not exactly as the slow path would accept it.
func (r *jsonReader) entries(put bool, buf []rawEntry) ([]rawEntry, bool) {
	if !r.eat('[') {
		return nil, false
	}
	if r.eat(']') {
		return buf, true
	}
	for {
		var e rawEntry
		var seen fields
		if !r.eat('{') {
			return nil, false
		}
		if !r.eat('}') {
			for {
				name, ok := r.name()
				if !ok {
					return nil, false
				}
				switch {
				case string(name) == "key" && seen.first(fieldKey):
					e.key, ok = r.str()
				case string(name) == "value" && put && seen.first(fieldValue):
					e.value, ok = r.str()
				case string(name) == "value_base64" && put && seen.first(fieldValueBase64):
					e.value, ok = r.str()
					e.base64 = true
				case string(name) == "expected_version" && seen.first(fieldExpectedVersion):
					e.expectedVersion, ok = r.intPtr()
				case string(name) == "ttl_ms" && put && seen.first(fieldTTL):
					e.ttlMs, ok = r.intPtr()
				default:
					return nil, false
				}
				more, closed := r.more('}')
				if !ok || !closed {
					return nil, false
				}
				if !more {
					break
				}
			}
		}
		// Exactly one of value and value_base64, or entryBody.value words the refusal.
		if put && seen&(fieldValue|fieldValueBase64) != fieldValue && seen&(fieldValue|fieldValueBase64) != fieldValueBase64 {
			return nil, false
		}
		buf = append(buf, e)
		more, ok := r.more(']')
		if !ok {
			return nil, false
		}
		if !more {
			return buf, true
		}
	}
}

// intPtr reads an integer into a fresh int64, as encoding/json fills a *int64.
func (r *jsonReader) intPtr() (*int64, bool) {
	v, ok := r.int()
	if !ok {
		return nil, false
	}
	return &v, true
}

// batchBody is what putAll and deleteAll bodies share: a mode and entries.
func (r *jsonReader) batchBody(put bool, buf []rawEntry) (kv.WriteMode, []rawEntry, bool) {
	mode := kv.WriteMode_ATOMIC
	entries := buf[:0]
	if !r.eat('{') {
		return 0, nil, false
	}
	if r.eat('}') {
		return mode, entries, r.end()
	}
	var seen fields
	for {
		name, ok := r.name()
		if !ok {
			return 0, nil, false
		}
		switch {
		case string(name) == "mode" && seen.first(fieldMode):
			mode, ok = r.mode()
		case string(name) == "entries" && seen.first(fieldEntries):
			entries, ok = r.entries(put, entries)
		default:
			return 0, nil, false
		}
		more, closed := r.more('}')
		if !ok || !closed {
			return 0, nil, false
		}
		if !more {
			return mode, entries, r.end()
		}
	}
}

// smallBatch is how many entries the fast path reads without allocating for them.
const smallBatch = 64

// textArena holds the decoded keys and values of one body: keys in one string, values in
// one byte slice, each sized by the body (decoding never lengthens a string).
type textArena struct {
	keys   strings.Builder
	values []byte
}

// size makes room for entries' keys and values.
func (a *textArena) size(entries []rawEntry) {
	var keys, values int
	for _, e := range entries {
		keys += len(e.key.raw)
		if e.base64 {
			values += base64.StdEncoding.DecodedLen(len(e.value.raw))
		} else {
			values += len(e.value.raw)
		}
	}
	a.values = make([]byte, 0, values)
	a.keys.Grow(keys)
}

// key appends s's text to the keys, returning where it lies.
func (a *textArena) key(s jsonString) (span [2]int, ok bool) {
	start := a.keys.Len()
	if !s.escaped {
		a.keys.Write(s.raw)
		return [2]int{start, a.keys.Len()}, true
	}
	var tmp [64]byte
	b, ok := unescape(tmp[:0], s)
	a.keys.Write(b)
	return [2]int{start, a.keys.Len()}, ok
}

// keysOnly decodes the keys of raw, for a body with no values, into one string it returns, and
// sets each entry's keyAt. An undecodable key is not ok.
func keysOnly(raw []rawEntry) (string, bool) {
	var a textArena
	a.size(raw)
	for i := range raw {
		var ok bool
		if raw[i].keyAt, ok = a.key(raw[i].key); !ok {
			return "", false
		}
	}
	return a.keys.String(), true
}

// value appends entry e's value, text or base64-decoded, returning it (capped, so a caller's
// append cannot reach the next value). Bad base64 is not ok.
func (a *textArena) value(e *rawEntry) ([]byte, bool) {
	start := len(a.values)
	if !e.base64 {
		var ok bool
		a.values, ok = unescape(a.values, e.value)
		return a.values[start:len(a.values):len(a.values)], ok
	}
	src := e.value.raw
	if e.value.escaped { // "\/" from encoders that escape slashes
		var ok bool
		if src, ok = unescape(nil, e.value); !ok {
			return nil, false
		}
	}
	dst := a.values[start : start+base64.StdEncoding.DecodedLen(len(src))]
	n, err := base64.StdEncoding.Decode(dst, src)
	if err != nil {
		return nil, false
	}
	a.values = a.values[:start+n]
	return a.values[start : start+n : start+n], true
}

// fastPutAll decodes a putAll body on the fast path; not ok means decode it with decodeJSON.
func fastPutAll(body []byte) (*kv.PutAllRequest, bool) {
	var buf [smallBatch]rawEntry
	r := jsonReader{b: body}
	mode, raw, ok := r.batchBody(true, buf[:0])
	if !ok {
		return nil, false
	}
	var a textArena
	a.size(raw)
	entries := make([]kv.Entry, len(raw))
	req := &kv.PutAllRequest{Mode: mode, Entries: make([]*kv.Entry, len(raw))}
	for i := range raw {
		e := &raw[i]
		if e.keyAt, ok = a.key(e.key); !ok {
			return nil, false
		}
		v, ok := a.value(e)
		if !ok {
			return nil, false
		}
		entries[i] = kv.Entry{Value: v, ExpectedVersion: e.expectedVersion, TtlMs: e.ttlMs}
		req.Entries[i] = &entries[i]
	}
	keys := a.keys.String()
	for i := range raw {
		entries[i].Key = keys[raw[i].keyAt[0]:raw[i].keyAt[1]]
	}
	return req, true
}

// fastDeleteAll decodes a deleteAll body on the fast path; not ok means decode it with
// decodeJSON.
func fastDeleteAll(body []byte) (*kv.DeleteAllRequest, bool) {
	var buf [smallBatch]rawEntry
	r := jsonReader{b: body}
	mode, raw, ok := r.batchBody(false, buf[:0])
	if !ok {
		return nil, false
	}
	keys, ok := keysOnly(raw)
	if !ok {
		return nil, false
	}
	entries := make([]kv.DeleteEntry, len(raw))
	req := &kv.DeleteAllRequest{Mode: mode, Entries: make([]*kv.DeleteEntry, len(raw))}
	for i, e := range raw {
		entries[i] = kv.DeleteEntry{Key: keys[e.keyAt[0]:e.keyAt[1]], ExpectedVersion: e.expectedVersion}
		req.Entries[i] = &entries[i]
	}
	return req, true
}

// fastGetAll decodes a getAll body on the fast path; not ok means decode it with decodeJSON.
func fastGetAll(body []byte) (*kv.GetAllRequest, bool) {
	r := jsonReader{b: body}
	if !r.eat('{') {
		return nil, false
	}
	req := &kv.GetAllRequest{}
	if r.eat('}') {
		return req, r.end()
	}
	name, ok := r.name()
	if !ok || string(name) != "keys" || !r.eat('[') {
		return nil, false
	}
	var buf [smallBatch]rawEntry
	raw := buf[:0]
	if !r.eat(']') {
		for {
			s, ok := r.str()
			if !ok {
				return nil, false
			}
			raw = append(raw, rawEntry{key: s})
			more, ok := r.more(']')
			if !ok {
				return nil, false
			}
			if !more {
				break
			}
		}
	}
	if !r.eat('}') || !r.end() {
		return nil, false
	}
	keys, ok := keysOnly(raw)
	if !ok {
		return nil, false
	}
	req.Keys = make([]string, len(raw))
	for i, e := range raw {
		req.Keys[i] = keys[e.keyAt[0]:e.keyAt[1]]
	}
	return req, true
}
