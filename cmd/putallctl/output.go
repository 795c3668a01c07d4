package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// record is one line of output: the outcome for one key.
type record struct {
	Key     string `json:"key"`
	Version int64  `json:"version"`
	Code    code   `json:"code"` // the zero value is OK
	// Value is set for a key read; a pointer so that an empty value still prints.
	Value       *[]byte `json:"value_base64,omitempty"`
	ExpiresAtMs int64   `json:"expires_at_ms,omitempty"`
	Created     bool    `json:"created,omitempty"`
	Replayed    bool    `json:"replayed,omitempty"`
}

// code prints an error code by name, in text and in JSON.
type code kv.ErrorCode

func (c code) String() string { return kv.ErrorCode(c).String() }

// MarshalText makes JSON show the name, not the number.
func (c code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// itemRecord is the record of a key read.
func itemRecord(it *kv.Item) record {
	r := record{Key: it.Key, Version: it.Version, Code: code(kv.ErrorCode_NOT_FOUND)}
	if it.Found {
		r.Code = code(kv.ErrorCode_OK)
		v := it.Value
		if v == nil {
			v = []byte{} // JSON shows "", not null: the key has a value, an empty one
		}
		r.Value = &v
		r.ExpiresAtMs = it.ExpiresAtMs
	}
	return r
}

// printer writes records to w, as text or (json) as one JSON object per line; the long
// commands (load, import, migrate) show their progress on progress.
type printer struct {
	w        io.Writer
	json     bool
	progress io.Writer
}

// print writes r on one line. As text: `key  version=N  code=C`, then the value if any
// (quoted text, or value_base64= when it is not UTF-8), expiry, and created/replayed marks.
func (p printer) print(r record) {
	if p.json {
		b, _ := json.Marshal(r) // cannot fail: plain fields only
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  version=%d  code=%s", quoteKey(r.Key), r.Version, r.Code)
	if r.Value != nil {
		if v := *r.Value; utf8.Valid(v) {
			fmt.Fprintf(&b, "  value=%s", strconv.Quote(string(v)))
		} else {
			fmt.Fprintf(&b, "  value_base64=%s", base64.StdEncoding.EncodeToString(v))
		}
	}
	if r.ExpiresAtMs != 0 {
		fmt.Fprintf(&b, "  expires_at_ms=%d", r.ExpiresAtMs)
	}
	if r.Created {
		b.WriteString("  created")
	}
	if r.Replayed {
		b.WriteString("  replayed")
	}
	fmt.Fprintln(p.w, b.String())
}

// failedKeys prints the keys a failed call reports (every failing key of an ATOMIC batch).
func (p printer) failedKeys(err error) {
	var e *kvclient.Error
	if !errors.As(err, &e) {
		return
	}
	for _, s := range e.Failed {
		p.print(record{Key: s.Key, Version: s.Version, Code: code(s.Code)})
	}
}

// quoteKey returns k as is when it reads unambiguously in a line of text, else quoted.
func quoteKey(k string) string {
	odd := func(r rune) bool { return r == '"' || unicode.IsSpace(r) || !unicode.IsPrint(r) }
	if k == "" || !utf8.ValidString(k) || strings.IndexFunc(k, odd) >= 0 {
		return strconv.Quote(k)
	}
	return k
}
