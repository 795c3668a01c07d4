package rpcguard

import (
	"strings"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/kitex/pkg/serviceinfo"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// The test service's types are shaped as Kitex generates them: pointers to structs, an enum
// as a named int64, optional scalars as pointers, a recursive struct.
type (
	tCode  int64
	tEntry struct {
		Key     string `thrift:"key,1" frugal:"1,default,string"`
		Value   []byte `thrift:"value,2" frugal:"2,default,binary"`
		Version *int64 `thrift:"version,3,optional" frugal:"3,optional,i64"`
		Code    tCode  `thrift:"code,4" frugal:"4,default,Code"`
	}
	tRequest struct {
		Entries []*tEntry        `thrift:"entries,1" frugal:"1,default,list<Entry>"`
		Keys    []string         `thrift:"keys,2" frugal:"2,default,list<string>"`
		Tags    map[string]int64 `thrift:"tags,3" frugal:"3,default,map<string:i64>"`
		Nested  []*tRequest      `thrift:"nested,4" frugal:"4,default,list<Request>"`
	}
	tArgs struct {
		Req *tRequest `thrift:"req,1" frugal:"1,default,Request"`
	}
)

// testCodecService is the test service: one method, Call, taking a tArgs.
func testCodecService() *serviceinfo.ServiceInfo {
	return &serviceinfo.ServiceInfo{ServiceName: "T", Methods: map[string]serviceinfo.MethodInfo{
		"Call": serviceinfo.NewMethodInfo(nil, func() any { return &tArgs{} }, func() any { return nil }, false),
	}}
}

func testCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := New(1<<20, testCodecService())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var bin = thrift.Binary

// enc builds Thrift binary by hand, as a hostile client would.
type enc []byte

func (e enc) field(t thrift.TType, id int16) enc { return bin.AppendFieldBegin(e, t, id) }
func (e enc) stop() enc                          { return bin.AppendFieldStop(e) }
func (e enc) list(et thrift.TType, n int) enc    { return bin.AppendListBegin(e, et, n) }
func (e enc) set(et thrift.TType, n int) enc     { return bin.AppendSetBegin(e, et, n) }
func (e enc) dict(k, v thrift.TType, n int) enc  { return bin.AppendMapBegin(e, k, v, n) }
func (e enc) str(s string) enc                   { return bin.AppendString(e, s) }
func (e enc) i64(v int64) enc                    { return bin.AppendI64(e, v) }
func (e enc) i32(v int32) enc                    { return bin.AppendI32(e, v) }
func (e enc) raw(b ...byte) enc                  { return append(e, b...) }

// call is a Thrift message calling method Call with the given arguments struct.
func call(args enc) []byte {
	return append(bin.AppendMessageBegin(nil, "Call", thrift.CALL, 1), args...)
}

// req opens the arguments' request struct (field 1).
func req() enc { return enc(nil).field(thrift.STRUCT, 1) }

func entry(e enc, key string) enc {
	return e.field(thrift.STRING, 1).str(key).field(thrift.STRING, 2).str("v").
		field(thrift.I64, 3).i64(7).field(thrift.I32, 4).i32(1).stop()
}

func nested(depth int) enc {
	e := req().field(thrift.LIST, 99)
	for range depth {
		e = e.list(thrift.LIST, 1)
	}
	e = e.list(thrift.I32, 0)
	return e.stop().stop()
}

const huge = 1<<31 - 1

func TestCheck(t *testing.T) {
	c := testCodec(t)
	tests := []struct {
		name string
		args enc
		want string // "" = accepted, else a part of the refusal
	}{
		{"no arguments", enc(nil).stop(), ""},
		{"a full request", entry(req().field(thrift.LIST, 1).list(thrift.STRUCT, 2), "a").
			field(thrift.STRING, 1).str("b").field(thrift.I32, 4).i32(2).stop().
			field(thrift.LIST, 2).list(thrift.STRING, 2).str("x").str("").
			field(thrift.MAP, 3).dict(thrift.STRING, thrift.I64, 1).str("t").i64(1).
			field(thrift.LIST, 4).list(thrift.STRUCT, 1).field(thrift.LIST, 2).list(thrift.STRING, 0).stop().stop().stop(), ""},
		{"a list sent as a set", req().field(thrift.SET, 2).set(thrift.STRING, 1).str("x").stop().stop(), ""},
		{"unknown fields of every type", req().field(thrift.MAP, 50).dict(thrift.I32, thrift.LIST, 1).i32(1).list(thrift.BOOL, 2).raw(1, 0).
			field(thrift.SET, 51).set(thrift.DOUBLE, 1).i64(0).field(thrift.STRUCT, 52).field(thrift.BYTE, 1).raw(9).stop().
			field(thrift.I16, 53).raw(0, 1).stop().stop(), ""},
		{"a known field of another type", req().field(thrift.I64, 2).i64(5).stop().stop(), ""},
		{"nested within the bound", nested(maxDepth - 3), ""},

		{"a huge list of structs", req().field(thrift.LIST, 1).list(thrift.STRUCT, huge).stop().stop(), "declares 2147483647 elements"},
		{"a huge list of strings", req().field(thrift.LIST, 2).list(thrift.STRING, huge).str("a").stop().stop(), "declares 2147483647 elements"},
		{"a huge map", req().field(thrift.MAP, 3).dict(thrift.STRING, thrift.I64, huge).stop().stop(), "declares 2147483647 elements"},
		{"a huge unknown map", req().field(thrift.MAP, 9).dict(thrift.BOOL, thrift.BOOL, huge).raw(1, 1).stop().stop(), "declares 2147483647 elements"},
		{"a huge unknown set", req().field(thrift.SET, 9).set(thrift.I64, huge).i64(1).stop().stop(), "declares 2147483647 elements"},
		{"a huge unknown list", req().field(thrift.LIST, 9).list(thrift.STRUCT, huge).stop().stop().stop(), "declares 2147483647 elements"},
		{"a huge string", req().field(thrift.LIST, 2).list(thrift.STRING, 1).i32(huge).stop().stop(), "declares 2147483647 bytes"},
		{"a huge binary", req().field(thrift.LIST, 1).list(thrift.STRUCT, 1).field(thrift.STRING, 2).i32(huge).stop().stop().stop(), "declares 2147483647 bytes"},
		{"a huge unknown string", enc(nil).field(thrift.STRING, 7).i32(huge).raw(0, 0), "declares 2147483647 bytes"},
		{"a negative list length", req().field(thrift.LIST, 2).list(thrift.STRING, -1).stop().stop(), "negative length -1"},
		{"a negative string length", enc(nil).field(thrift.STRING, 7).i32(-5).stop(), "negative length -5"},
		{"an unknown field type", enc(nil).raw(0x80, 0, 1, 0, 0), "unknown type -128"},
		{"an unknown element type in an empty list", enc(nil).field(thrift.LIST, 7).raw(0xe8, 0, 0, 0, 0).stop(), "unknown element type -24"},
		{"an unknown key type in an empty map", enc(nil).field(thrift.MAP, 7).raw(0x20, 0x0b, 0, 0, 0, 0).stop(), "unknown key or value type"},
		// A list header that says bool, so its 9 elements fit in 9 bytes, hiding a list of
		// 2^31 strings where the decoder (which ignores the header's type) reads a request.
		{"a list of another element type", req().field(thrift.LIST, 4).list(thrift.BOOL, 9).
			field(thrift.LIST, 2).list(thrift.STRING, huge).stop().stop().stop(), "a list of type 2 where the schema has type 12"},
		{"a map of other types", req().field(thrift.MAP, 3).dict(thrift.I32, thrift.I64, 1).i32(1).i64(1).stop().stop(), "a map of types 8, 10"},
		{"nested too deep", nested(maxDepth - 2), "nested deeper than 32"},
		{"empty structs that decode to 64 times their size", func() enc {
			e := req().field(thrift.LIST, 1).list(thrift.STRUCT, 10_000)
			for range 10_000 {
				e = e.stop()
			}
			return e.stop().stop()
		}(), "more than 16 times its size"},
		{"no field stop", req().field(thrift.LIST, 2).list(thrift.STRING, 0), "a field needs 1 bytes, 0 are left"},
		{"a cut field header", enc(nil).raw(byte(thrift.STRING), 0), "a field header needs 3 bytes"},
		{"a cut value", enc(nil).field(thrift.I64, 9).raw(1, 2, 3), "a value needs 8 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Check(call(tc.args))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want a refusal with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("refusal %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCheckMessage(t *testing.T) {
	c := testCodec(t)
	args := enc(nil).stop()
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"no header", []byte{0x80, 1}, "no Thrift message header"},
		{"an old-style header", append(bin.AppendString(nil, "Call"), 1, 0, 0, 0, 0, 0), "no Thrift message header"},
		{"a reply", append(bin.AppendMessageBegin(nil, "Call", thrift.REPLY, 1), args...), "message type 2"},
		{"an exception", append(bin.AppendMessageBegin(nil, "Call", thrift.EXCEPTION, 1), args...), "message type 3"},
		{"an unknown method", append(bin.AppendMessageBegin(nil, "Nope", thrift.CALL, 1), args...), `unknown method "Nope"`},
	} {
		if err := c.Check(tc.payload); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want a refusal with %q", tc.name, err, tc.want)
		}
	}
}

// TestSchemaOfRecursiveTypes checks that a struct that holds itself is read along the same
// node at every depth.
func TestSchemaOfRecursiveTypes(t *testing.T) {
	c := testCodec(t)
	args := c.schema["Call"]
	r := args.field(1, thrift.STRUCT)
	inner := r.field(4, thrift.LIST).elem
	if inner.st != r.st || inner.wire != thrift.STRUCT || inner.heap == 0 {
		t.Fatalf("nested request %+v; want the request's own fields", inner)
	}
	if code := r.field(1, thrift.LIST).elem.field(4, thrift.I32); code == nil {
		t.Fatal("the enum field is not read as i32")
	}
}

// FuzzCheckAgreesWithSkip checks the check without a schema against the skip the generated
// decoder uses for fields it does not know: whatever the check accepts, the skip must read
// to the same end without panicking (it panics on some type codes the check refuses).
func FuzzCheckAgreesWithSkip(f *testing.F) {
	f.Add([]byte(nested(3)))
	f.Add([]byte(req().field(thrift.MAP, 9).dict(thrift.STRING, thrift.LIST, 1).str("k").list(thrift.I16, 2).raw(0, 1, 0, 2).stop().stop()))
	f.Add([]byte(enc(nil).field(thrift.LIST, 7).raw(0xe8, 0, 0, 0, 0).stop()))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := checker{b: b, budget: decodeFactor*len(b) + decodeSlack}
		end, err := c.value(0, thrift.STRUCT, nil, maxDepth)
		if err != nil {
			return
		}
		n, serr := bin.Skip(b, thrift.STRUCT)
		if serr != nil || n != end {
			t.Fatalf("check read %d bytes; skip read %d, %v", end, n, serr)
		}
	})
}
