package gateway

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// offerReader serves body a few bytes at a time and records the largest buffer a reader has
// offered it for what has arrived so far.
type offerReader struct {
	body, rest []byte
	step       int
	worst      int // the largest room offered beyond twice what had arrived, or bodyChunk
	err        error
}

func (r *offerReader) Read(p []byte) (int, error) {
	arrived := len(r.body) - len(r.rest)
	r.worst = max(r.worst, arrived+len(p)-max(2*arrived, bodyChunk))
	if len(r.rest) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// TestReadUpTo checks that a body is read whole up to the limit, in a buffer that grows only
// as bytes arrive, whatever length was declared.
func TestReadUpTo(t *testing.T) {
	for _, c := range []struct {
		name            string
		size, declared  int
		limit, wantSize int
	}{
		{"empty", 0, 0, 100, 0},
		{"small declared", 300, 300, 1 << 20, 300},
		{"small chunked", 300, -1, 1 << 20, 300},
		{"large declared", 100_000, 100_000, 1 << 20, 100_000},
		{"large chunked", 100_000, -1, 1 << 20, 100_000},
		{"chunked over the limit", 100_000, -1, 50_001, 50_001},
		{"at the limit", 50_001, -1, 50_001, 50_001},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("0123456789"), c.size/10+1)[:c.size]
			r := &offerReader{body: body, rest: body, step: 1000}
			got, err := readUpTo(r, c.declared, c.limit)
			if err != nil || got == nil || !bytes.Equal(got, body[:c.wantSize]) {
				t.Fatalf("read %d bytes, %v (nil %v); want the first %d of %d", len(got), err, got == nil, c.wantSize, c.size)
			}
			if r.worst > 0 {
				t.Fatalf("offered %d bytes more than twice what had arrived", r.worst)
			}
			if c.declared > 0 && cap(got) > c.declared+64 {
				t.Fatalf("a body of %d bytes in a buffer of %d", c.declared, cap(got))
			}
		})
	}
	// A declared length far over what arrives allocates no more than bodyChunk.
	r := &offerReader{body: []byte("short"), rest: []byte("short"), step: 1, err: io.ErrUnexpectedEOF}
	got, err := readUpTo(r, 8<<20, 8<<20+1)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "short" || cap(got) > bodyChunk {
		t.Fatalf("read %q (capacity %d), %v; want the 5 bytes sent, an error, at most %d bytes set aside", got, cap(got), err, bodyChunk)
	}
	if got, err := readUpTo(iotest.OneByteReader(bytes.NewReader([]byte("abc"))), 3, 10); err != nil || string(got) != "abc" {
		t.Fatalf("one byte at a time: %q, %v", got, err)
	}
}
