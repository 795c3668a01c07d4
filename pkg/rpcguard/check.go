package rpcguard

import (
	"encoding/binary"
	"fmt"

	"github.com/cloudwego/gopkg/protocol/thrift"
)

const (
	// maxDepth bounds how deeply structs and containers may nest in a request (the API's own
	// types nest 6 deep; an unknown field may add some).
	maxDepth = 32
	// decodeFactor bounds what decoding a request may allocate, as a multiple of its encoded
	// size. A request from the SDK takes at most about 4.3 times (a batch of entries with
	// empty keys and values: 15 bytes on the wire, 64 in memory); a list of empty structs
	// would take 64 times (1 byte each on the wire) and is refused.
	decodeFactor = 16
	// decodeSlack is allocation allowed beyond decodeFactor, for the smallest requests.
	decodeSlack = 4096
)

// minWire is the fewest bytes a value of each wire type takes; 0 marks a type code that is
// not a Thrift value type.
var minWire = [256]uint8{
	thrift.BOOL: 1, thrift.BYTE: 1, thrift.I16: 2, thrift.I32: 4, thrift.I64: 8, thrift.DOUBLE: 8,
	thrift.STRING: 4, thrift.STRUCT: 1, thrift.MAP: 6, thrift.SET: 5, thrift.LIST: 5,
}

// fixedWire marks the wire types whose values always take minWire bytes.
var fixedWire = [256]bool{
	thrift.BOOL: true, thrift.BYTE: true, thrift.I16: true, thrift.I32: true, thrift.I64: true, thrift.DOUBLE: true,
}

// malformed is why a request's bytes were refused, and where.
type malformed struct {
	at   int // offset in the message
	what string
}

func (m *malformed) Error() string { return fmt.Sprintf("byte %d: %s", m.at, m.what) }

// checker walks one encoded Thrift struct without allocating, and proves that the generated
// decoder can read it within bounds: every declared length fits in the bytes left (before
// the decoder would allocate for it), every type code is a Thrift type, nesting stays under
// maxDepth, and, where the schema says what the decoder will make of a value, the list
// element and map types are the schema's and the decoder's allocations stay within budget.
// A value the schema does not know (an unknown field, or a known one of another wire type)
// is checked the same way, without a schema: the decoder skips it without allocating.
type checker struct {
	b      []byte
	base   int // offset of b in the message, for error positions
	budget int // bytes the decoder may still allocate
}

// check returns nil if b holds a struct the decoder can read along n, else why not.
func check(b []byte, base int, n *node) *malformed {
	c := checker{b: b, base: base, budget: decodeFactor*len(b) + decodeSlack}
	_, err := c.value(0, thrift.STRUCT, n, maxDepth)
	return err
}

// fail is kept out of line so that the checks on the success path stay small enough to be
// inlined.
//
//go:noinline
func (c *checker) fail(off int, format string, args ...any) *malformed {
	return &malformed{at: c.base + off, what: fmt.Sprintf(format, args...)}
}

// need fails unless k bytes are left at off.
func (c *checker) need(off, k int, what string) *malformed {
	if k > len(c.b)-off {
		return c.fail(off, "%s needs %d bytes, %d are left", what, k, len(c.b)-off)
	}
	return nil
}

// spend takes k bytes of allocation from the budget.
func (c *checker) spend(off, k int) *malformed {
	if k > c.budget {
		return c.fail(off, "the request would take more than %d times its size to decode", decodeFactor)
	}
	c.budget -= k
	return nil
}

// count reads a container's declared element count at off and fails unless the bytes left
// after its header (hdr bytes) can hold that many elements of at least per bytes each.
func (c *checker) count(off, hdr, per int) (int, *malformed) {
	n := int(int32(binary.BigEndian.Uint32(c.b[off+hdr-4:])))
	if n < 0 {
		return 0, c.fail(off, "negative length %d", n)
	}
	if left := len(c.b) - off - hdr; n > left/per {
		return 0, c.fail(off, "a container declares %d elements; the %d bytes left hold at most %d", n, left, left/per)
	}
	return n, nil
}

// value checks one value of wire type t at off, read along n (nil: skipped by the decoder),
// and returns the offset after it.
func (c *checker) value(off int, t thrift.TType, n *node, depth int) (int, *malformed) {
	if minWire[uint8(t)] == 0 {
		return 0, c.fail(off, "unknown type %d", t)
	}
	if fixedWire[uint8(t)] {
		return off + int(minWire[uint8(t)]), c.need(off, int(minWire[uint8(t)]), "a value")
	}
	if depth == 0 {
		return 0, c.fail(off, "nested deeper than %d", maxDepth)
	}
	switch t {
	case thrift.STRING:
		return c.str(off, n != nil)
	case thrift.STRUCT:
		return c.structValue(off, n, depth)
	case thrift.LIST, thrift.SET:
		return c.list(off, n, depth)
	default: // thrift.MAP
		return c.mapValue(off, n, depth)
	}
}

// structValue checks a struct's fields up to its stop. Fixed-size values and strings, most
// fields, are checked in line.
func (c *checker) structValue(off int, n *node, depth int) (int, *malformed) {
	b := c.b
	for {
		if off >= len(b) {
			return 0, c.fail(off, "a field needs 1 bytes, 0 are left")
		}
		t := thrift.TType(b[off])
		if t == thrift.STOP {
			return off + 1, nil
		}
		if off+3 > len(b) {
			return 0, c.fail(off, "a field header needs 3 bytes, %d are left", len(b)-off)
		}
		var f *node
		if n != nil {
			if f = n.field(int16(binary.BigEndian.Uint16(b[off+1:])), t); f != nil && f.heap > 0 {
				if err := c.spend(off, f.heap); err != nil {
					return 0, err
				}
			}
		}
		off += 3
		var err *malformed
		switch {
		case fixedWire[uint8(t)]:
			if off += int(minWire[uint8(t)]); off > len(b) {
				return 0, c.fail(off-int(minWire[uint8(t)]), "a value needs %d bytes, %d are left", minWire[uint8(t)], len(b)-off+int(minWire[uint8(t)]))
			}
		case t == thrift.STRING:
			off, err = c.str(off, f != nil)
		default:
			off, err = c.value(off, t, f, depth-1)
		}
		if err != nil {
			return 0, err
		}
	}
}

// str checks a string at off, charging its bytes to the budget when the decoder copies it
// (decoded is true), and returns the offset after it.
func (c *checker) str(off int, decoded bool) (int, *malformed) {
	if off+4 > len(c.b) {
		return 0, c.fail(off, "a length needs 4 bytes, %d are left", len(c.b)-off)
	}
	l := int(int32(binary.BigEndian.Uint32(c.b[off:])))
	if l < 0 {
		return 0, c.fail(off, "negative length %d", l)
	}
	if l > len(c.b)-off-4 {
		return 0, c.fail(off, "a string declares %d bytes; %d are left", l, len(c.b)-off-4)
	}
	if decoded {
		if err := c.spend(off, l); err != nil {
			return 0, err
		}
	}
	return off + 4 + l, nil
}

func (c *checker) list(off int, n *node, depth int) (int, *malformed) {
	if err := c.need(off, 5, "a list header"); err != nil {
		return 0, err
	}
	et := thrift.TType(c.b[off])
	per := int(minWire[uint8(et)])
	if per == 0 {
		return 0, c.fail(off, "unknown element type %d", et)
	}
	size, err := c.count(off, 5, per)
	if err != nil {
		return 0, err
	}
	var e *node
	if n != nil {
		// The decoder reads the elements as the schema's, whatever the header says.
		if e = n.elem; !sameWire(e.wire, et) {
			return 0, c.fail(off, "a list of type %d where the schema has type %d", et, e.wire)
		}
		if err := c.spend(off, size*(e.slot+e.heap)); err != nil {
			return 0, err
		}
	}
	off += 5
	if fixedWire[uint8(et)] {
		return off + size*per, nil
	}
	for range size {
		if off, err = c.value(off, et, e, depth-1); err != nil {
			return 0, err
		}
	}
	return off, nil
}

func (c *checker) mapValue(off int, n *node, depth int) (int, *malformed) {
	if err := c.need(off, 6, "a map header"); err != nil {
		return 0, err
	}
	kt, vt := thrift.TType(c.b[off]), thrift.TType(c.b[off+1])
	if minWire[uint8(kt)] == 0 || minWire[uint8(vt)] == 0 {
		return 0, c.fail(off, "unknown key or value type %d, %d", kt, vt)
	}
	size, err := c.count(off, 6, int(minWire[uint8(kt)])+int(minWire[uint8(vt)]))
	if err != nil {
		return 0, err
	}
	var k, v *node
	if n != nil {
		if k, v = n.key, n.elem; !sameWire(k.wire, kt) || !sameWire(v.wire, vt) {
			return 0, c.fail(off, "a map of types %d, %d where the schema has %d, %d", kt, vt, k.wire, v.wire)
		}
		// A Go map takes about twice its keys and values.
		if err := c.spend(off, 2*size*(k.slot+k.heap+v.slot+v.heap)); err != nil {
			return 0, err
		}
	}
	off += 6
	for range size {
		if off, err = c.value(off, kt, k, depth-1); err != nil {
			return 0, err
		}
		if off, err = c.value(off, vt, v, depth-1); err != nil {
			return 0, err
		}
	}
	return off, nil
}
