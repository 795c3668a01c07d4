package handler

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/cloudwego/frugal"
	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/rpcguard"
)

func entries(n, valueBytes int) []*kv.Entry {
	es := make([]*kv.Entry, n)
	for i := range es {
		es[i] = &kv.Entry{Key: fmt.Sprintf("bench/key/%04d", i), Value: make([]byte, valueBytes), TtlMs: new(int64(60_000))}
	}
	return es
}

// sampleArgs are the arguments of a call of every method, as the SDK encodes them.
func sampleArgs() map[string]thrift.FastCodec {
	put := &kv.PutAllRequest{Entries: entries(3, 8), Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("r-1")}
	return map[string]thrift.FastCodec{
		"Put": &kv.KVServicePutArgs{Req: &kv.PutRequest{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(3)),
			TtlMs: new(int64(1000)), RequestId: new("r-2")}},
		"Get":    &kv.KVServiceGetArgs{Req: &kv.GetRequest{Key: "k"}},
		"Delete": &kv.KVServiceDeleteArgs{Req: &kv.DeleteRequest{Key: "k", ExpectedVersion: new(int64(2)), RequestId: new("r-3")}},
		"PutAll": &kv.KVServicePutAllArgs{Req: put},
		"GetAll": &kv.KVServiceGetAllArgs{Req: &kv.GetAllRequest{Keys: []string{"a", "", "c"}}},
		"DeleteAll": &kv.KVServiceDeleteAllArgs{Req: &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"},
			{Key: "b", ExpectedVersion: new(int64(4))}}, Mode: kv.WriteMode_ATOMIC}},
		"PutAllMany": &kv.KVServicePutAllManyArgs{Req: &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{put, {Entries: entries(1, 0)}}}},
		"Scan":       &kv.KVServiceScanArgs{Req: &kv.ScanRequest{Prefix: "user/", Cursor: "AQIDBA", Limit: 100, KeysOnly: true}},
	}
}

func encode(args thrift.FastCodec) []byte {
	b := make([]byte, args.BLength())
	return b[:args.FastWriteNocopy(b, nil)]
}

func message(method string, args []byte) []byte {
	return append(thrift.Binary.AppendMessageBegin(nil, method, thrift.CALL, 1), args...)
}

func newCodec(t testing.TB) *rpcguard.Codec {
	t.Helper()
	c, err := rpcguard.New(8<<20, kvservice.NewServiceInfo())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCheckAcceptsWhatTheSDKSends checks every method's request as the SDK encodes it, and
// the largest the SDK makes for the least bytes (entries with empty keys and values).
func TestCheckAcceptsWhatTheSDKSends(t *testing.T) {
	c := newCodec(t)
	empty := make([]*kv.Entry, 1000)
	for i := range empty {
		empty[i] = &kv.Entry{}
	}
	all := sampleArgs()
	all["PutAll"] = &kv.KVServicePutAllArgs{Req: &kv.PutAllRequest{Entries: empty}}
	for method, args := range sampleArgs() {
		if err := c.Check(message(method, encode(args))); err != nil {
			t.Errorf("%s: %v", method, err)
		}
	}
	if err := c.Check(message("PutAll", encode(all["PutAll"]))); err != nil {
		t.Errorf("1000 empty entries: %v", err)
	}
}

// methodNames are the service's methods, in a fixed order for the fuzz input's method byte.
var methodNames = []string{"Put", "Get", "Delete", "PutAll", "GetAll", "DeleteAll", "PutAllMany", "Scan"}

// FuzzDecode drives raw bytes into the RPC port's decoder as the server runs it: the codec's
// check, then, for what the check accepts, the generated decoder of the method. The decoder
// must read it without panicking, without an error (so that every refusal is the check's,
// answered and logged as such) and without allocating much more than the check allowed for
// (16 times the request's size). The corpus in testdata/fuzz holds the requests that
// crashed the server.
func FuzzDecode(f *testing.F) {
	c := newCodec(f)
	for i, name := range methodNames {
		f.Add(uint8(i), encode(sampleArgs()[name]))
	}
	svc := kvservice.NewServiceInfo()
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		name := methodNames[int(m)%len(methodNames)]
		if c.Check(message(name, body)) != nil {
			return
		}
		args := svc.Methods[name].NewArgs().(thrift.FastCodec)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := args.FastRead(body)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%s: the check accepted what the decoder refuses: %v", name, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(32*len(body)+64<<10) {
			t.Fatalf("%s: decoding %d bytes allocated %d", name, len(body), grew)
		}
	})
}

// TestFrugalDecodesAsGenerated checks that frugal, which decodes the server's requests
// (requestCodec), reads every method's arguments as the generated FastRead does.
func TestFrugalDecodesAsGenerated(t *testing.T) {
	for method, args := range sampleArgs() {
		body := encode(args)
		typ := reflect.TypeOf(args).Elem()
		generated := reflect.New(typ).Interface().(thrift.FastCodec)
		if _, err := generated.FastRead(body); err != nil {
			t.Fatalf("%s: FastRead: %v", method, err)
		}
		decoded := reflect.New(typ).Interface()
		if n, err := frugal.DecodeObject(body, decoded); err != nil || n != len(body) {
			t.Fatalf("%s: frugal read %d of %d bytes: %v", method, n, len(body), err)
		}
		if !reflect.DeepEqual(decoded, generated) {
			t.Errorf("%s: frugal decoded %+v, FastRead %+v", method, decoded, generated)
		}
	}
}

// BenchmarkPutAllDecode is the cost of the check on the PutAll path: decoding the arguments
// of a PutAll of 16 entries of 64 bytes with the generated decoder alone, and after the check.
func BenchmarkPutAllDecode(b *testing.B) {
	c := newCodec(b)
	body := encode(&kv.KVServicePutAllArgs{Req: &kv.PutAllRequest{Entries: entries(16, 64)}})
	msg := message("PutAll", body)
	b.Run("check", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if err := c.Check(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("generated", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := new(kv.KVServicePutAllArgs).FastRead(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("frugal", func(b *testing.B) { // what the server decodes with (requestCodec)
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := frugal.DecodeObject(body, new(kv.KVServicePutAllArgs)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checked", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if err := c.Check(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := new(kv.KVServicePutAllArgs).FastRead(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
