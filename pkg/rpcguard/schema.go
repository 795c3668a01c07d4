package rpcguard

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/kitex/pkg/serviceinfo"
)

// node is what the generated decoder makes of one Thrift value: its wire type, the bytes it
// allocates for it, and for a container or struct the nodes of what it holds. The check walks
// a request along these nodes, so it reads every field the way the decoder will.
type node struct {
	wire thrift.TType
	// slot is the value's size where a container holds it (a pointer for a struct), and heap
	// what the decoder allocates besides (the struct a pointer points to, an optional's value).
	// A list of n values costs n*(slot+heap) before its first element is read.
	slot, heap int
	// elem is a list's or set's element or a map's value; key is a map's key.
	elem, key *node
	// st is a struct's fields (shared by the struct and pointers to it).
	st *structFields
}

// structFields are a struct's field nodes by field id: at[id-base], nil for an id it lacks.
type structFields struct {
	at   []*node
	base int16
}

// field returns the node of field id of struct n, or nil when the struct has no such field
// or the wire type is not the field's (the decoder then skips the value).
func (n *node) field(id int16, wire thrift.TType) *node {
	i := int(id) - int(n.st.base)
	if i < 0 || i >= len(n.st.at) {
		return nil
	}
	f := n.st.at[i]
	if f == nil || !sameWire(f.wire, wire) {
		return nil
	}
	return f
}

// sameWire reports whether a value sent as wire type got is read as one of type want. The
// generated decoder reads a slice field sent as a list or a set alike.
func sameWire(want, got thrift.TType) bool {
	return want == got || (want == thrift.LIST || want == thrift.SET) && (got == thrift.LIST || got == thrift.SET)
}

// schema maps each method name to the node of its arguments struct.
type schema map[string]*node

// newSchema derives the schema of every method of svc from the Go types Kitex generated for
// its arguments (field ids from their thrift tags, wire types from their Go types, as frugal
// does).
func newSchema(svc *serviceinfo.ServiceInfo) (schema, error) {
	b := builder{seen: map[reflect.Type]*node{}}
	s := schema{}
	for name, m := range svc.Methods {
		args := m.NewArgs()
		if args == nil {
			return nil, fmt.Errorf("method %s: no arguments type", name)
		}
		n, err := b.node(reflect.TypeOf(args))
		if err != nil {
			return nil, fmt.Errorf("method %s: %w", name, err)
		}
		if n.wire != thrift.STRUCT {
			return nil, fmt.Errorf("method %s: arguments of type %T are not a struct", name, args)
		}
		s[name] = n
	}
	return s, nil
}

type builder struct {
	seen map[reflect.Type]*node // memoised, so shared and recursive types end
}

func (b *builder) node(t reflect.Type) (*node, error) {
	if n, ok := b.seen[t]; ok {
		return n, nil
	}
	n := &node{slot: int(t.Size())}
	b.seen[t] = n
	var err error
	switch t.Kind() {
	case reflect.Pointer:
		// The decoder allocates the value a pointer points to; a struct's fields may not
		// be filled in yet (a recursive type), but they are shared, not copied.
		var e *node
		if e, err = b.node(t.Elem()); err == nil {
			n.wire, n.elem, n.key, n.st = e.wire, e.elem, e.key, e.st
			n.heap = e.slot
		}
	case reflect.Struct:
		n.wire, n.st = thrift.STRUCT, &structFields{}
		err = b.fill(n.st, t)
	case reflect.String:
		n.wire = thrift.STRING
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			n.wire = thrift.STRING // binary
			break
		}
		n.wire = thrift.LIST
		n.elem, err = b.node(t.Elem())
	case reflect.Map:
		n.wire = thrift.MAP
		if n.key, err = b.node(t.Key()); err == nil {
			n.elem, err = b.node(t.Elem())
		}
	case reflect.Bool:
		n.wire = thrift.BOOL
	case reflect.Int8:
		n.wire = thrift.BYTE
	case reflect.Int16:
		n.wire = thrift.I16
	case reflect.Int32:
		n.wire = thrift.I32
	case reflect.Int64:
		n.wire = thrift.I64
		if t != reflect.TypeFor[int64]() {
			n.wire = thrift.I32 // a named int64 is an enum
		}
	case reflect.Float64:
		n.wire = thrift.DOUBLE
	default:
		err = fmt.Errorf("type %s has no Thrift wire type", t)
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

// fill sets st to the fields of struct type t, read from their thrift tags.
func (b *builder) fill(st *structFields, t reflect.Type) error {
	ids := map[int16]*node{}
	lo, hi := int16(0), int16(-1)
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("thrift")
		if !ok {
			continue
		}
		parts := strings.Split(tag, ",")
		if len(parts) < 2 {
			return fmt.Errorf("%s.%s: thrift tag %q has no field id", t, f.Name, tag)
		}
		id, err := strconv.ParseInt(parts[1], 10, 16)
		if err != nil {
			return fmt.Errorf("%s.%s: thrift tag %q: %w", t, f.Name, tag, err)
		}
		fn, err := b.node(f.Type)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		if len(ids) == 0 || int16(id) < lo {
			lo = int16(id)
		}
		hi = max(hi, int16(id))
		ids[int16(id)] = fn
	}
	if len(ids) > 0 {
		st.base = lo
		st.at = make([]*node, int(hi)-int(lo)+1)
		for id, fn := range ids {
			st.at[int(id)-int(lo)] = fn
		}
	}
	return nil
}
