package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// TestResponseEncoding checks that the appended responses are byte for byte what
// json.Marshal writes for the response types, on random keys, values and numbers.
func TestResponseEncoding(t *testing.T) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	text := func() string {
		alphabet := []string{"a", "é", "😀", "<", ">", "&", `"`, `\`, "\n", "\t", "\b", "\f", "\x00", "\x1f", "\x7f",
			"\u2028", "\u2029", "\xff", "\xed\xa0\x80", "\xe2\x80", "/"}
		var b []byte
		for range rng.IntN(12) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		return string(b)
	}
	num := func() int64 { return []int64{0, 1, -1, 1 << 62, -1 << 63, rng.Int64()}[rng.IntN(6)] }
	for i := range 2000 {
		res := batchResult{Revision: num(), Applied: int32(num()), Replayed: rng.IntN(2) == 0,
			SuggestedBatch: int32(num()), RetryAfterMs: num()}
		if i%7 != 0 {
			res.Results = []keyStatus{}
			for range rng.IntN(4) {
				res.Results = append(res.Results, keyStatus{Key: text(), Code: text(), Version: num()})
			}
		}
		want, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendBatchResult(nil, &res); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: batch result %+v:\n got %s\nwant %s", seed, res, got, want)
		}

		resp := &kv.GetAllResponse{Revision: num()}
		for range rng.IntN(4) {
			it := &kv.Item{Key: text(), Found: rng.IntN(3) > 0, Version: num(), ExpiresAtMs: num()}
			if it.Found {
				it.Value = []byte(text())
			}
			resp.Items = append(resp.Items, it)
		}
		if want, err = json.Marshal(getAllResult{Revision: resp.Revision, Items: items(resp.Items)}); err != nil {
			t.Fatal(err)
		}
		if got := appendGetAll(nil, resp); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: getAll %+v:\n got %s\nwant %s", seed, resp, got, want)
		}
	}
}

// items converts GetAll's items as the getAll response was once built, for json.Marshal to
// encode: value_base64 for a found key, value too when its bytes are UTF-8.
func items(in []*kv.Item) []item {
	out := make([]item, 0, len(in))
	for _, it := range in {
		o := item{Key: it.GetKey(), Found: it.GetFound(), Version: it.GetVersion(), ExpiresAtMs: it.GetExpiresAtMs()}
		if o.Found {
			b64 := base64.StdEncoding.EncodeToString(it.Value)
			o.ValueBase64 = &b64
			if utf8.Valid(it.Value) {
				s := string(it.Value)
				o.Value = &s
			}
		}
		out = append(out, o)
	}
	return out
}

// BenchmarkEncodePutAllResult encodes the answer to putallbench's putAll (16 keys, each OK)
// with json.Marshal, as the gateway did, and by appending.
func BenchmarkEncodePutAllResult(b *testing.B) {
	res := batchResult{Revision: 1 << 40, Applied: 16, SuggestedBatch: 1000}
	for i := range 16 {
		res.Results = append(res.Results, keyStatus{Key: fmt.Sprintf("bench-%08d", i*7919), Code: "OK", Version: 1 << 40})
	}
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(res); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendBatchResult(buf[:0], &res) // as into Hertz's pooled buffer
		}
	})
}
