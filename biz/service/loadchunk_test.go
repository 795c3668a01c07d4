package service

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// TestWireChunkReadsAsTheGeneratedDecoder decodes random chunks (empty and long keys and
// values, optional fields, unknown fields of every kind) with wireChunk and with the generated
// FastRead, and wants the same chunk, and an error for every cut of the bytes.
func TestWireChunkReadsAsTheGeneratedDecoder(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 17))
	for round := range 200 {
		c := &kv.LoadChunk{Chunk: rng.Int64()}
		for i := range rng.IntN(20) {
			e := &kv.Entry{Key: fmt.Sprintf("k%d-%s", i, make([]byte, rng.IntN(3)*40)), Value: make([]byte, rng.IntN(100))}
			if rng.IntN(3) == 0 {
				e.ExpectedVersion = new(rng.Int64N(10))
			}
			if rng.IntN(3) == 0 {
				e.TtlMs = new(rng.Int64N(1000) + 1)
			}
			c.Entries = append(c.Entries, e)
		}
		b := thrift.FastMarshal(c)
		if rng.IntN(2) == 0 { // an unknown field the decoders skip, before the stop
			b = b[:len(b)-1]
			b = thrift.Binary.AppendFieldBegin(b, thrift.LIST, 9)
			b = thrift.Binary.AppendListBegin(b, thrift.STRING, 1)
			b = thrift.Binary.AppendString(b, "unknown")
			b = thrift.Binary.AppendFieldStop(b)
		}
		want := new(kv.LoadChunk)
		if _, err := want.FastRead(b); err != nil {
			t.Fatal(err)
		}
		got := new(wireChunk)
		n, err := got.FastRead(b)
		if err != nil || n != len(b) || !reflect.DeepEqual(normalized(&got.LoadChunk), normalized(want)) {
			t.Fatalf("seed %d round %d: read %d of %d bytes, %v:\n got %+v\nwant %+v", seed, round, n, len(b), err, got.LoadChunk, want)
		}
		for cut := range len(b) {
			if _, err := new(wireChunk).FastRead(b[:cut]); err == nil {
				t.Fatalf("seed %d round %d: %d of %d bytes read without an error", seed, round, cut, len(b))
			}
		}
	}
}

// normalized is c with empty values as nil (the generated decoder makes []byte{}).
func normalized(c *kv.LoadChunk) *kv.LoadChunk {
	out := &kv.LoadChunk{Chunk: c.Chunk}
	for _, e := range c.Entries {
		e2 := *e
		if len(e2.Value) == 0 {
			e2.Value = nil
		}
		out.Entries = append(out.Entries, &e2)
	}
	return out
}
