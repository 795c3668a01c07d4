package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// The JSON request bodies. Codes are ErrorCode names ("OK", "VERSION_MISMATCH"), modes are
// "atomic" or "best_effort" (or the IDL's "ATOMIC", "BEST_EFFORT"; atomic when absent),
// versions and times are JSON integers.

// putAllBody is the body of POST /v1/kv:putAll.
type putAllBody struct {
	Mode    *string     `json:"mode"`
	Entries []entryBody `json:"entries"`
}

// entryBody is one entry to write. Exactly one of Value (UTF-8 text) and ValueBase64 (any
// bytes, standard base64 with padding) must be present.
type entryBody struct {
	Key             string  `json:"key"`
	Value           *string `json:"value"`
	ValueBase64     *string `json:"value_base64"`
	ExpectedVersion *int64  `json:"expected_version"`
	TTLMs           *int64  `json:"ttl_ms"`
}

// getAllBody is the body of POST /v1/kv:getAll.
type getAllBody struct {
	Keys []string `json:"keys"`
}

// deleteAllBody is the body of POST /v1/kv:deleteAll.
type deleteAllBody struct {
	Mode    *string           `json:"mode"`
	Entries []deleteEntryBody `json:"entries"`
}

// deleteEntryBody is one key to delete.
type deleteEntryBody struct {
	Key             string `json:"key"`
	ExpectedVersion *int64 `json:"expected_version"`
}

// The JSON response bodies.

// putResult answers PUT /v1/kv/{key} (the version is also the ETag).
type putResult struct {
	Version        int64 `json:"version"`
	Created        bool  `json:"created"`
	Replayed       bool  `json:"replayed"`
	SuggestedBatch int32 `json:"suggested_batch"`
}

// batchResult answers putAll and deleteAll: results line up with the request's entries.
// retry_after_ms is set when best_effort entries were not admitted in time (their code is
// RESOURCE_EXHAUSTED): resend exactly those after it.
type batchResult struct {
	Revision       int64       `json:"revision"`
	Applied        int32       `json:"applied"`
	Replayed       bool        `json:"replayed"`
	SuggestedBatch int32       `json:"suggested_batch"`
	RetryAfterMs   int64       `json:"retry_after_ms,omitempty"`
	Results        []keyStatus `json:"results"`
}

// keyStatus is the outcome for one key, in responses and in a problem's failed member.
type keyStatus struct {
	Key     string `json:"key"`
	Code    string `json:"code"`
	Version int64  `json:"version"`
}

// getAllResult answers getAll: items line up with the request's keys.
type getAllResult struct {
	Revision int64  `json:"revision"`
	Items    []item `json:"items"`
}

// item is one key read. For a found key value_base64 is always present and value too when the
// bytes are valid UTF-8, so text reads naturally and bytes stay exact; an absent key has
// neither. expires_at_ms (Unix milliseconds) is omitted for a key that never expires.
type item struct {
	Key         string  `json:"key"`
	Found       bool    `json:"found"`
	Version     int64   `json:"version"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	ExpiresAtMs int64   `json:"expires_at_ms,omitempty"`
}

// decodeJSON decodes body, which must hold exactly one JSON value, into v, refusing unknown
// fields. Every failure is INVALID_ARGUMENT with a sentence naming what is wrong and where.
// The batch calls come here only for what their fast path (jsonfast.go) does not take: every
// refusal, and bodies spelled unusually.
func decodeJSON(body []byte, v any) error {
	if err := checkText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("the body holds more than one JSON value")
	}
	return nil
}

// checkText refuses a body that is not valid UTF-8 or that escapes half a surrogate pair
// ("\ud800" alone): encoding/json would decode either silently as U+FFFD, storing a key or
// value the caller never sent.
func checkText(body []byte) error {
	if !utf8.Valid(body) {
		return invalid("the body is not valid UTF-8 (at byte %d); send bytes as value_base64", invalidUTF8At(body))
	}
	// In valid JSON a backslash only ever starts an escape (outside strings it is a syntax
	// error the decoder reports), so escapes are found without tracking strings.
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r, ok := escapedRune(body[i+1:])
		switch {
		case !ok:
			i++ // a two-byte escape such as \" or \\, or a malformed one left to the decoder
		case utf16.IsSurrogate(r):
			low, pair := rune(0), false
			if len(body) > i+7 && body[i+6] == '\\' {
				low, pair = escapedRune(body[i+7:])
			}
			if r >= 0xdc00 || !pair || low < 0xdc00 || low > 0xdfff {
				return invalid(`the body escapes half a surrogate pair (\u%04x at byte %d), which is not a character`, r, i)
			}
			i += 11
		default:
			i += 5
		}
	}
	return nil
}

// escapedRune is the code unit of the \uXXXX escape b starts with (after its backslash).
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 5 || b[0] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[1:5]), 16, 16)
	return rune(n), err == nil
}

// invalidUTF8At is the offset of the first byte of b that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// jsonError turns a decoding error into a sentence for the caller.
func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return invalid("the body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("the body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return invalid("the body is not valid JSON: %v (at byte %d)", syntax, syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid("the body must be a JSON object, not %s", typ.Value)
		}
		return invalid("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	// The rest (an unknown field, a number out of range) says it clearly after the prefix.
	return invalid("%s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a Go kind as JSON does.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"):
		return "an integer"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	case kind == "struct":
		return "an object"
	case kind == "bool":
		return "true or false"
	}
	return "a " + kind
}

// writeMode parses a mode name, in the gateway's spelling or the IDL's; absent means atomic.
func writeMode(m *string) (kv.WriteMode, error) {
	switch {
	case m == nil || *m == "atomic" || *m == "ATOMIC":
		return kv.WriteMode_ATOMIC, nil
	case *m == "best_effort" || *m == "BEST_EFFORT":
		return kv.WriteMode_BEST_EFFORT, nil
	}
	return 0, invalid(`mode must be "atomic" or "best_effort" (or "ATOMIC", "BEST_EFFORT"), got %q`, *m)
}

// value is entry i's bytes, from exactly one of value and value_base64.
func (e entryBody) value(i int) ([]byte, error) {
	switch {
	case (e.Value == nil) == (e.ValueBase64 == nil):
		return nil, invalid("entries[%d]: give exactly one of value (UTF-8 text) and value_base64", i)
	case e.Value != nil:
		return []byte(*e.Value), nil
	}
	b, err := base64.StdEncoding.DecodeString(*e.ValueBase64)
	if err != nil {
		return nil, invalid("entries[%d].value_base64 is not standard padded base64: %v", i, err)
	}
	return b, nil
}

// decodePutAll decodes a putAll body into the API request (without its request_id, which comes
// from Idempotency-Key). Limits (sizes, counts, empty keys) are the service's to check.
func decodePutAll(body []byte) (*kv.PutAllRequest, error) {
	if req, ok := fastPutAll(body); ok {
		return req, nil
	}
	return decodePutAllJSON(body)
}

// decodePutAllJSON is decodePutAll through encoding/json: the authority on what is refused and why.
func decodePutAllJSON(body []byte) (*kv.PutAllRequest, error) {
	var b putAllBody
	if err := decodeJSON(body, &b); err != nil {
		return nil, err
	}
	mode, err := writeMode(b.Mode)
	if err != nil {
		return nil, err
	}
	req := &kv.PutAllRequest{Mode: mode, Entries: make([]*kv.Entry, len(b.Entries))}
	for i, e := range b.Entries {
		v, err := e.value(i)
		if err != nil {
			return nil, err
		}
		req.Entries[i] = &kv.Entry{Key: e.Key, Value: v, ExpectedVersion: e.ExpectedVersion, TtlMs: e.TTLMs}
	}
	return req, nil
}

// decodeGetAll decodes a getAll body into the API request.
func decodeGetAll(body []byte) (*kv.GetAllRequest, error) {
	if req, ok := fastGetAll(body); ok {
		return req, nil
	}
	return decodeGetAllJSON(body)
}

// decodeGetAllJSON is decodeGetAll through encoding/json: the authority on what is refused and why.
func decodeGetAllJSON(body []byte) (*kv.GetAllRequest, error) {
	var b getAllBody
	if err := decodeJSON(body, &b); err != nil {
		return nil, err
	}
	return &kv.GetAllRequest{Keys: b.Keys}, nil
}

// decodeDeleteAll decodes a deleteAll body into the API request (without its request_id).
func decodeDeleteAll(body []byte) (*kv.DeleteAllRequest, error) {
	if req, ok := fastDeleteAll(body); ok {
		return req, nil
	}
	return decodeDeleteAllJSON(body)
}

// decodeDeleteAllJSON is decodeDeleteAll through encoding/json: the authority on what is refused and why.
func decodeDeleteAllJSON(body []byte) (*kv.DeleteAllRequest, error) {
	var b deleteAllBody
	if err := decodeJSON(body, &b); err != nil {
		return nil, err
	}
	mode, err := writeMode(b.Mode)
	if err != nil {
		return nil, err
	}
	req := &kv.DeleteAllRequest{Mode: mode, Entries: make([]*kv.DeleteEntry, len(b.Entries))}
	for i, e := range b.Entries {
		req.Entries[i] = &kv.DeleteEntry{Key: e.Key, ExpectedVersion: e.ExpectedVersion}
	}
	return req, nil
}

// keyStatuses converts the API's per-key outcomes; never nil, so JSON shows [] for none.
func keyStatuses(in []*kv.KeyStatus) []keyStatus {
	out := make([]keyStatus, 0, len(in))
	for _, s := range in {
		out = append(out, keyStatus{Key: s.GetKey(), Code: s.GetCode().String(), Version: s.GetVersion()})
	}
	return out
}
