package service

import (
	"bytes"
	"fmt"
	"unsafe"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// wireChunk is a LoadChunk as a Load stream receives it: decoded into one copy of its bytes,
// which every key and value points into, instead of the generated decoder's allocation of
// each key and each value (two per entry: a third of the server's time in a bulk load went
// to them and to collecting them). The copy is the chunk's own (ttstream reuses the bytes it
// hands to FastRead), and nothing writes to it, so the keys (strings over it) stay immutable.
// The bytes have passed rpcguard's check against the schema before FastRead sees them.
type wireChunk struct {
	kv.LoadChunk
}

// FastRead implements thrift.FastCodec, reading as the generated LoadChunk.FastRead does (the
// same fields by id and wire type, anything else skipped).
func (c *wireChunk) FastRead(b []byte) (int, error) {
	own := bytes.Clone(b)
	return readFields(own, 0, func(off int, t thrift.TType, id int16) (int, bool, error) {
		switch {
		case id == 1 && t == thrift.I64:
			v, l, err := thrift.Binary.ReadI64(own[off:])
			c.Chunk = v
			return l, true, err
		case id == 2 && (t == thrift.LIST || t == thrift.SET):
			l, err := c.readEntries(own, off)
			return l, true, err
		}
		return 0, false, nil
	})
}

// readEntries reads the list of entries at off of b.
func (c *wireChunk) readEntries(b []byte, off int) (int, error) {
	_, size, l, err := thrift.Binary.ReadListBegin(b[off:])
	if err != nil {
		return 0, err
	}
	start := off
	off += l
	backing := make([]kv.Entry, size)
	c.Entries = make([]*kv.Entry, size)
	for i := range backing {
		e := &backing[i]
		n, err := readFields(b, off, func(off int, t thrift.TType, id int16) (int, bool, error) {
			switch {
			case id == 1 && t == thrift.STRING:
				s, l, err := bytesAt(b, off)
				if len(s) > 0 {
					e.Key = unsafe.String(&s[0], len(s))
				}
				return l, true, err
			case id == 2 && t == thrift.STRING:
				s, l, err := bytesAt(b, off)
				e.Value = s
				return l, true, err
			case (id == 3 || id == 4) && t == thrift.I64:
				v, l, err := thrift.Binary.ReadI64(b[off:])
				if id == 3 {
					e.ExpectedVersion = &v
				} else {
					e.TtlMs = &v
				}
				return l, true, err
			}
			return 0, false, nil
		})
		if err != nil {
			return 0, err
		}
		off = n
		c.Entries[i] = e
	}
	return off - start, nil
}

// readFields reads the fields of the struct at off of b up to its stop, handing each to field
// (which returns the bytes it read, or false for a field it does not know, which is skipped),
// and returns the offset after the stop.
func readFields(b []byte, off int, field func(off int, t thrift.TType, id int16) (int, bool, error)) (int, error) {
	for {
		t, id, l, err := thrift.Binary.ReadFieldBegin(b[off:])
		if err != nil {
			return 0, err
		}
		off += l
		if t == thrift.STOP {
			return off, nil
		}
		n, known, err := field(off, t, id)
		if !known {
			n, err = thrift.Binary.Skip(b[off:], t)
		}
		if err != nil {
			return 0, err
		}
		off += n
	}
}

// bytesAt returns the string or binary at off of b, without copying (capacity cut to its
// length, so that an append cannot write over what follows), and the bytes it took.
func bytesAt(b []byte, off int) ([]byte, int, error) {
	n, _, err := thrift.Binary.ReadI32(b[off:])
	if err != nil {
		return nil, 0, err
	}
	start := off + 4
	if n < 0 || int(n) > len(b)-start {
		return nil, 0, fmt.Errorf("a string of %d bytes where %d are left", n, len(b)-start)
	}
	end := start + int(n)
	return b[start:end:end], 4 + int(n), nil
}
