// Package exportfile writes and reads putallkv's export format: a self-describing file of keys,
// values, versions and expiries, cut into chunks that each carry a SHA-256 of their bytes, so
// that a reader (an import, a migration) can check every chunk before it applies it.
//
// # Format, version 1
//
// JSON lines (UTF-8, one object a line, "\n" after each):
//
//	{"putallkv_export":1,"prefix":"user/","revision":42,"keys":2500,"chunk_keys":1000}
//	{"key":"user/1","value":"ada","version":7}                       an entry
//	{"key":"user/2","value_base64":"AP8=","version":9,"expires_at_ms":1767225600000}
//	...                                                               chunk_keys entries, then
//	{"chunk":0,"keys":1000,"sha256":"<64 hex digits>"}                a chunk line
//	...                                                               more entries and chunks
//	{"end":true,"keys":2500,"chunks":3,"sha256":"<64 hex digits>"}    the trailer
//
// The header comes first: the format version, the prefix exported, a revision every entry's
// version is at or below, the number of entries and the entries per chunk. Entries follow, each
// with "value" when the value is UTF-8 text and "value_base64" otherwise (never both), its
// version and, for a key with a TTL, its expiry in Unix milliseconds. After every chunk_keys
// entries, and after the last entries if fewer, a chunk line gives the chunk's number (from 0),
// its entries and the SHA-256 of its entry lines' exact bytes, newlines included. The trailer
// repeats the totals, with the SHA-256 of every entry line of the file. A file without its
// trailer is incomplete; a reader refuses it, as it refuses any chunk whose bytes do not match.
package exportfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"unicode/utf8"
)

// Version is the format version this package writes and reads.
const Version = 1

// MaxLine bounds one line a Reader takes: an entry of the largest key and value putallkv
// accepts, in base64, fits with room to spare.
const MaxLine = 64 << 20

// Header is the first line of a file.
type Header struct {
	Format    int    `json:"putallkv_export"`
	Prefix    string `json:"prefix"`
	Revision  int64  `json:"revision"`
	Keys      int64  `json:"keys"`
	ChunkKeys int    `json:"chunk_keys"`
}

// Entry is one key of a file.
type Entry struct {
	Key         string
	Value       []byte
	Version     int64
	ExpiresAtMs int64
}

// entryLine is an Entry as a line.
type entryLine struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	Version     int64   `json:"version"`
	ExpiresAtMs int64   `json:"expires_at_ms,omitempty"`
}

// chunkLine ends a chunk; trailer ends the file.
type chunkLine struct {
	Chunk  int64  `json:"chunk"`
	Keys   int    `json:"keys"`
	SHA256 string `json:"sha256"`
}

type trailer struct {
	End    bool   `json:"end"`
	Keys   int64  `json:"keys"`
	Chunks int64  `json:"chunks"`
	SHA256 string `json:"sha256"`
}

// Write writes a whole file to w: *h (its Format set to Version and Keys to the count of
// entries), then every entry next yields until it returns false or an error, chunked and
// summed. The header needs the count before the entries, so Write keeps the entries' lines in
// body, a scratch file of the caller's (emptied and rewound first), and writes *h only once
// next is done: next may still set its fields (the revision of what it read, say).
func Write(w io.Writer, body io.ReadWriteSeeker, h *Header, next func() (Entry, bool, error)) error {
	if h.ChunkKeys <= 0 {
		return fmt.Errorf("exportfile: chunk_keys must be positive, got %d", h.ChunkKeys)
	}
	if t, ok := body.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(0); err != nil {
			return err
		}
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return err
	}
	bw := bufio.NewWriter(body)
	var chunks []chunkLine
	chunk, all := sha256.New(), sha256.New()
	inChunk := 0
	flush := func() {
		chunks = append(chunks, chunkLine{Chunk: int64(len(chunks)), Keys: inChunk, SHA256: hex.EncodeToString(chunk.Sum(nil))})
		chunk.Reset()
		inChunk = 0
	}
	for {
		e, ok, err := next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		line, err := encodeEntry(e)
		if err != nil {
			return err
		}
		chunk.Write(line)
		all.Write(line)
		if _, err := bw.Write(line); err != nil {
			return err
		}
		h.Keys++
		if inChunk++; inChunk == h.ChunkKeys {
			flush()
		}
	}
	if inChunk > 0 {
		flush()
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h.Format = Version
	out := bufio.NewWriter(w)
	writeJSON(out, *h)
	br := bufio.NewReaderSize(body, 64<<10)
	for _, c := range chunks {
		for range c.Keys {
			line, err := br.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return fmt.Errorf("exportfile: reading back the entries: %w", err)
			}
			out.Write(line)
			for errors.Is(err, bufio.ErrBufferFull) { // a line longer than the buffer
				line, err = br.ReadSlice('\n')
				if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
					return fmt.Errorf("exportfile: reading back the entries: %w", err)
				}
				out.Write(line)
			}
		}
		writeJSON(out, c)
	}
	writeJSON(out, trailer{End: true, Keys: h.Keys, Chunks: int64(len(chunks)), SHA256: hex.EncodeToString(all.Sum(nil))})
	return out.Flush()
}

func encodeEntry(e Entry) ([]byte, error) {
	l := entryLine{Key: e.Key, Version: e.Version, ExpiresAtMs: e.ExpiresAtMs}
	if utf8.Valid(e.Value) {
		v := string(e.Value)
		l.Value = &v
	} else {
		v := base64.StdEncoding.EncodeToString(e.Value)
		l.ValueBase64 = &v
	}
	b, err := json.Marshal(l)
	return append(b, '\n'), err
}

// writeJSON writes v as a line; its errors surface at the writer's Flush.
func writeJSON(w *bufio.Writer, v any) {
	b, _ := json.Marshal(v) // plain fields only: cannot fail
	w.Write(append(b, '\n'))
}

// Reader reads a file chunk by chunk, handing out a chunk's entries only once its checksum
// matched.
type Reader struct {
	br     *bufio.Reader
	header Header
	line   int
	chunks int64
	keys   int64
	all    hash.Hash
	done   bool
}

// NewReader reads the header of the file r holds.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), all: sha256.New()}
	line, err := rd.next()
	if err != nil {
		return nil, err
	}
	if err := strict(line, &rd.header); err != nil || rd.header.Format != Version || rd.header.ChunkKeys <= 0 {
		return nil, fmt.Errorf("exportfile: line 1: not a putallkv export of format version %d (%v)", Version, err)
	}
	return rd, nil
}

// Header returns the file's header.
func (rd *Reader) Header() Header { return rd.header }

// Next returns the next chunk's entries, checked against its checksum; io.EOF after the
// trailer, once the totals matched. Any other error means the file is damaged or cut, and
// names the line.
func (rd *Reader) Next() ([]Entry, error) {
	if rd.done {
		return nil, io.EOF
	}
	sum := sha256.New()
	var entries []Entry
	for {
		line, err := rd.next()
		if err != nil {
			return nil, err
		}
		switch {
		case bytes.HasPrefix(line, []byte(`{"key"`)):
			var l entryLine
			if err := strict(line, &l); err != nil {
				return nil, rd.fail("an entry: %v", err)
			}
			e := Entry{Key: l.Key, Version: l.Version, ExpiresAtMs: l.ExpiresAtMs}
			switch {
			case (l.Value == nil) == (l.ValueBase64 == nil):
				return nil, rd.fail("an entry needs exactly one of value and value_base64")
			case l.Value != nil:
				e.Value = []byte(*l.Value)
			default:
				if e.Value, err = base64.StdEncoding.DecodeString(*l.ValueBase64); err != nil {
					return nil, rd.fail("value_base64: %v", err)
				}
			}
			for _, h := range []hash.Hash{sum, rd.all} {
				h.Write(line)
				h.Write([]byte{'\n'})
			}
			entries = append(entries, e)
			if len(entries) > rd.header.ChunkKeys {
				return nil, rd.fail("a chunk of more than chunk_keys (%d) entries", rd.header.ChunkKeys)
			}
		case bytes.HasPrefix(line, []byte(`{"chunk"`)):
			var c chunkLine
			if err := strict(line, &c); err != nil {
				return nil, rd.fail("a chunk line: %v", err)
			}
			if c.Chunk != rd.chunks || c.Keys != len(entries) || c.SHA256 != hex.EncodeToString(sum.Sum(nil)) {
				return nil, rd.fail("chunk %d does not match its entries (it says chunk %d of %d keys, sha256 %s)", rd.chunks, c.Chunk, c.Keys, c.SHA256)
			}
			rd.chunks++
			rd.keys += int64(len(entries))
			return entries, nil
		case bytes.HasPrefix(line, []byte(`{"end"`)):
			var t trailer
			if err := strict(line, &t); err != nil {
				return nil, rd.fail("the trailer: %v", err)
			}
			switch {
			case len(entries) > 0:
				return nil, rd.fail("%d entries after the last chunk", len(entries))
			case !t.End || t.Keys != rd.keys || t.Chunks != rd.chunks || t.Keys != rd.header.Keys || t.SHA256 != hex.EncodeToString(rd.all.Sum(nil)):
				return nil, rd.fail("the trailer does not match the file (%d keys in %d chunks, header %d keys)", rd.keys, rd.chunks, rd.header.Keys)
			}
			if _, err := rd.br.ReadByte(); err != io.EOF {
				return nil, rd.fail("bytes after the trailer")
			}
			rd.done = true
			return nil, io.EOF
		default:
			return nil, rd.fail("not an entry, a chunk line or the trailer")
		}
	}
}

// next returns the next line, without its newline.
func (rd *Reader) next() ([]byte, error) {
	rd.line++
	var line []byte
	for {
		part, err := rd.br.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > MaxLine {
			return nil, rd.fail("a line over %d bytes", MaxLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, rd.fail("the file ends without its trailer (cut short?)")
		default:
			return nil, fmt.Errorf("exportfile: line %d: %w", rd.line, err)
		}
	}
}

func (rd *Reader) fail(format string, args ...any) error {
	return fmt.Errorf("exportfile: line %d: %s", rd.line, fmt.Sprintf(format, args...))
}

// strict decodes line into v, refusing unknown fields and anything after the object.
func strict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}
