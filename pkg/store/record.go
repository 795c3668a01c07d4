package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"
)

// A record is one applied batch: its revision, its tag, and every entry of the batch with its
// outcome, so that recovery can both re-apply the writes and give back the results. Its layout
// is in the package documentation, "On-disk format".
const recordVersion = 1

const (
	flagDelete byte = 1 << iota
	flagCreated
)

const recordRevisionOffset = 1

// appendRecord encodes batch b with its results to buf, leaving the revision zero.
func appendRecord(buf []byte, b Batch, results []Result) []byte {
	buf = append(buf, recordVersion)
	buf = binary.LittleEndian.AppendUint64(buf, 0)
	buf = appendBytes(buf, b.Tag)
	buf = binary.AppendUvarint(buf, uint64(len(b.Writes)))
	for i := range b.Writes {
		w, r := &b.Writes[i], results[i]
		buf = append(buf, byte(r.Code))
		buf = appendBytes(buf, []byte(w.Key))
		if r.Code != OK {
			buf = binary.AppendVarint(buf, r.Version)
			continue
		}
		var flags byte
		if w.Delete {
			flags |= flagDelete
		}
		if r.Created {
			flags |= flagCreated
		}
		buf = append(buf, flags)
		if !w.Delete {
			buf = appendBytes(buf, w.Value)
			buf = binary.AppendVarint(buf, w.ExpiresAtMs)
		}
	}
	return buf
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func setRecordRevision(rec []byte, rev int64) {
	binary.LittleEndian.PutUint64(rec[recordRevisionOffset:], uint64(rev))
}

// record is a decoded journal record.
type record struct {
	rev     int64
	tag     []byte
	writes  []Write  // every entry; only those whose result is OK apply
	results []Result // OK results carry the record's revision as their version
}

var errBadRecord = errors.New("store: malformed journal record")

// decodeRecord parses rec into r, reusing r's slices. Byte slices and keys in the result alias
// rec, so rec must not change while they are in use (the log's replay buffers never do): recovery
// decodes some million keys, and copying each would be an allocation apiece.
func decodeRecord(rec []byte, r *record) error {
	d := decoder{buf: rec}
	if v := d.byte(); v != recordVersion {
		return fmt.Errorf("%w: version %d", errBadRecord, v)
	}
	r.rev = int64(d.uint64())
	r.tag = d.bytes()
	n := d.uvarint()
	if n > uint64(len(rec)) { // every entry takes at least a byte
		return fmt.Errorf("%w: %d entries in %d bytes", errBadRecord, n, len(rec))
	}
	r.writes = slices.Grow(r.writes[:0], int(n))[:n]
	r.results = slices.Grow(r.results[:0], int(n))[:n]
	for i := range r.writes {
		w, res := &r.writes[i], &r.results[i]
		*res = Result{Code: Code(d.byte())}
		*w = Write{Key: d.str(), ExpectedVersion: AnyVersion}
		if res.Code != OK {
			res.Version = d.varint()
			continue
		}
		flags := d.byte()
		if flags&^(flagDelete|flagCreated) != 0 {
			return fmt.Errorf("%w: unknown flags %#x", errBadRecord, flags)
		}
		w.Delete = flags&flagDelete != 0
		res.Created = flags&flagCreated != 0
		res.Version = r.rev
		if !w.Delete {
			w.Value = d.bytes()
			w.ExpiresAtMs = d.varint()
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.buf))
	}
	return nil
}

// decoder reads the record encoding; the first error sticks and later reads return zeros.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", errBadRecord, what)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail("byte")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uint64() uint64 {
	if len(d.buf) < 8 {
		d.fail("uint64")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// str reads bytes as a string that aliases the buffer (see decodeRecord).
func (d *decoder) str() string {
	b := d.bytes()
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail("bytes")
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}
