package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// maxLine bounds one input line; the server's value limit is far below it.
const maxLine = 64 << 20

// jsonEntry is one line of putall's input. Pointers tell an absent field from a zero one.
type jsonEntry struct {
	Key             *string `json:"key"`
	Value           *string `json:"value"`
	ValueBase64     *string `json:"value_base64"`
	ExpectedVersion *int64  `json:"expected_version"`
	TTLMs           *int64  `json:"ttl_ms"`
}

// readEntries reads putall's input: one JSON object per line, blank lines skipped. An error
// names the line it is about.
func readEntries(r io.Reader) ([]*kv.Entry, error) {
	entries, err := ndjsonEntries(r, math.MaxInt)()
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("no entries in the input")
	}
	return entries, nil
}

// ndjsonEntries returns the entries of putall's input lines, up to n at a time, until none
// are left; an error names the line.
func ndjsonEntries(r io.Reader, n int) func() ([]*kv.Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLine)
	line := 0
	return func() ([]*kv.Entry, error) {
		var entries []*kv.Entry
		for len(entries) < n && sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			e, err := parseEntry(b)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			entries = append(entries, e)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line+1, err)
		}
		return entries, nil
	}
}

// parseEntry parses one non-blank input line. Unknown fields are refused, so that a
// misspelt "expected_version" cannot turn a conditional write into an unconditional one.
func parseEntry(line []byte) (*kv.Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var j jsonEntry
	if err := dec.Decode(&j); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value on the line")
	}
	if j.Key == nil {
		return nil, errors.New(`missing "key"`)
	}
	e := &kv.Entry{Key: *j.Key, ExpectedVersion: j.ExpectedVersion, TtlMs: j.TTLMs}
	switch {
	case j.Value != nil && j.ValueBase64 != nil:
		return nil, errors.New(`both "value" and "value_base64"`)
	case j.Value != nil:
		e.Value = []byte(*j.Value)
	case j.ValueBase64 != nil:
		v, err := base64.StdEncoding.DecodeString(*j.ValueBase64)
		if err != nil {
			return nil, fmt.Errorf(`"value_base64": %w`, err)
		}
		e.Value = v
	default:
		return nil, errors.New(`missing "value" or "value_base64"`)
	}
	return e, nil
}
