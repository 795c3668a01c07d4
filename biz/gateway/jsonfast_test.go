package gateway

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// decoders pairs each batch body's fast path with its encoding/json path (the decoder the
// gateway has always had, which still words every refusal).
var decoders = []struct {
	name string
	fast func([]byte) (any, bool)
	slow func([]byte) (any, error)
}{
	{"putAll",
		func(b []byte) (any, bool) { return fastPutAll(b) },
		func(b []byte) (any, error) { return decodePutAllJSON(b) }},
	{"getAll",
		func(b []byte) (any, bool) { return fastGetAll(b) },
		func(b []byte) (any, error) { return decodeGetAllJSON(b) }},
	{"deleteAll",
		func(b []byte) (any, bool) { return fastDeleteAll(b) },
		func(b []byte) (any, error) { return decodeDeleteAllJSON(b) }},
}

// benchPutAll is the putAll body putallbench sends: 16 entries of 64 bytes in value_base64.
func benchPutAll() []byte {
	v := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("v", 64)))
	var b strings.Builder
	b.WriteString(`{"entries":[`)
	for i := range 16 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"key":"bench-%08d","value_base64":%q}`, i*7919, v)
	}
	b.WriteString(`],"mode":"atomic"}`)
	return []byte(b.String())
}

// TestFastPathTakesCommonBodies checks that the bodies clients send take the fast path and
// decode as encoding/json decodes them: a slip here costs speed, not correctness.
func TestFastPathTakesCommonBodies(t *testing.T) {
	bodies := map[string][]string{
		"putAll": {
			string(benchPutAll()),
			`{}`, `{"entries":[]}`, ` { "mode" : "best_effort" , "entries" : [ { "key" : "a" , "value" : "" } ] } `,
			`{"mode":"BEST_EFFORT","entries":[{"ttl_ms":60000,"key":"a/b","value_base64":"AP8=","expected_version":-0}]}`,
			`{"entries":[{"key":"ü😀","value":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000","expected_version":0,"ttl_ms":999999999999999999}]}`,
			`{"entries":[{"key":"k","value_base64":"AP8\/\r\nAA=="},{"key":"a\\ud800","value":"x"}]}`,
			`{"entries":[` + strings.Repeat(`{"key":"k","value":"v"},`, 2*smallBatch) + `{"key":"k","value":"v"}]}`,
		},
		"getAll":    {`{}`, `{"keys":[]}`, `{"keys":["a","\u00e9","b/c"]}`, "{\"keys\":[\"\u2028\"]}\n"},
		"deleteAll": {`{}`, `{"mode":"atomic","entries":[{"key":"a"},{"key":"b","expected_version":7}]}`},
	}
	for _, d := range decoders {
		for _, body := range bodies[d.name] {
			fast, ok := d.fast([]byte(body))
			slow, err := d.slow([]byte(body))
			if !ok || err != nil || !reflect.DeepEqual(fast, slow) {
				t.Errorf("%s %.80q: fast path %+v (taken %v); encoding/json %+v, %v", d.name, body, fast, ok, slow, err)
			}
		}
	}
}

// TestFastPathDefersRefusals checks that malformed bodies, and the spellings the fast path
// leaves alone, go to encoding/json, and that the gateway's decoders then answer exactly as
// encoding/json does, refusal sentences included.
func TestFastPathDefersRefusals(t *testing.T) {
	bodies := map[string][]string{
		"putAll": {
			`{"entries":[{"key":"a","value":"x","ttl_ms":1e3}]}`, `{"entries":[{"key":"a","value":"x","ttl_ms":01}]}`,
			`{"entries":[{"key":"a","value":"x","ttl_ms":-}]}`, `{"entries":[{"key":"a","value":"x","ttl_ms":9223372036854775808}]}`,
			`{"entries":[{"key":"a","value":"x","ttl_ms":1.0}]}`, `{"entries":[{"key":"a","value":"\x"}]}`,
			`{"entries":[{"key":"a","value":"\u12"}]}`, "{\"entries\":[{\"key\":\"a\",\"value\":\"\t\"}]}",
			`{"entries":[{"key":"a","value":"\ud800\u0041"}]}`, `{"entries":[{"key":"a","value_base64":"AP8"}]}`,
			`{"entries":[{"key":"a"}]}`, `{"entries":[{"key":"a","value":"x","value_base64":"eA=="}]}`,
			`{"mode":"Atomic"}`, `{"mode":"\u0061tomic"}`, `{"mode":null}`, `{"entries":null}`, `{"entries":[null]}`,
			`{"Entries":[{"KEY":"a","Value":"x"}]}`, `{"entries":[{"k\u0065y":"a","value":"x"}]}`,
			`{"entries":[{"key":"a","value":"x"}],"entries":[{"key":"b"}]}`, `{"entries":[{"key":"a","key":"b","value":"x"}]}`,
			`{"entries":[{"key":"a","value":"x"}]}x`, `{"entries":[{"key":"a","value":"x"},]}`, `{"entries":[{"key":"a","value":"x",}]}`,
			"{\"entries\":[{\"key\":\"a\xff\",\"value\":\"x\"}]}", "\ufeff{}", `null`, `[]`, ``, ` `, `{`, `{"entries":[`,
		},
		"getAll":    {`{"keys":["a"],"keys":[]}`, `{"keys":null}`, `{"keys":[1]}`, `{"keys":["a"] "x":1}`, `{"keys":["\udc00"]}`},
		"deleteAll": {`{"entries":[{"key":"a","value":"x"}]}`, `{"entries":[{"key":"a","ttl_ms":1}]}`, `{"mode":"best effort"}`},
	}
	for _, d := range decoders {
		for _, body := range bodies[d.name] {
			if v, ok := d.fast([]byte(body)); ok {
				t.Errorf("%s %q: the fast path took it: %+v", d.name, body, v)
			}
		}
	}
	all := []string{}
	for _, b := range bodies {
		all = append(all, b...)
	}
	for _, m := range malformed {
		all = append(all, m.body)
	}
	product := map[string]func([]byte) (any, error){
		"putAll":    func(b []byte) (any, error) { return decodePutAll(b) },
		"getAll":    func(b []byte) (any, error) { return decodeGetAll(b) },
		"deleteAll": func(b []byte) (any, error) { return decodeDeleteAll(b) },
	}
	for _, d := range decoders {
		for _, body := range all {
			got, err := product[d.name]([]byte(body))
			want, wantErr := d.slow([]byte(body))
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
				t.Errorf("%s %q: %+v, %v; encoding/json %+v, %v", d.name, body, got, err, want, wantErr)
			}
		}
	}
}

// FuzzFastDecoders is the differential test of the fast path: whatever the body, a request
// the fast path decodes is the request encoding/json (behind checkText, with unknown fields
// refused) decodes from it, so the fast path never accepts what the gateway refused before,
// nor reads anything differently. `go test` runs the seeds; `go test -fuzz FuzzFastDecoders
// ./biz/gateway` explores.
func FuzzFastDecoders(f *testing.F) {
	f.Add(benchPutAll())
	for _, seed := range []string{
		`{"mode":"best_effort","entries":[{"key":"a/b","value_base64":"AP8=","expected_version":7,"ttl_ms":60000}]}`,
		`{"entries":[{"key":"ü","value":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","expected_version":-0}]}`,
		`{"entries":[{"key":"a","value_base64":"AP8\/\nAA=="}],"mode":"ATOMIC"}`,
		`{"entries":[{"key":"a","value":"x","ttl_ms":99999999999999999}]}`,
		`{"entries":[{"key":"a"},{"key":"b","expected_version":0}],"mode":"best_effort"}`,
		`{"keys":["a","\u00e9"]}`, `{"keys":[]}`, `{}`, `{"Keys":["a"]}`,
		`{"entries":[{"key":"\ud800","value":"x"}]}`, "{\"keys\":[\"\xed\xa0\x80\"]}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range decoders {
			fast, ok := d.fast(body)
			if !ok {
				continue
			}
			if slow, err := d.slow(body); err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%s %q: fast path %+v; encoding/json %+v, %v", d.name, body, fast, slow, err)
			}
		}
	})
}

// BenchmarkDecodePutAll decodes putallbench's putAll body (16 entries of 64 bytes in base64)
// through encoding/json, as the gateway did, and through the fast path.
func BenchmarkDecodePutAll(b *testing.B) {
	body := benchPutAll()
	for _, d := range []struct {
		name   string
		decode func([]byte) error
	}{
		{"encoding_json", func(b []byte) error { _, err := decodePutAllJSON(b); return err }},
		{"fast", func(b []byte) error { _, err := decodePutAll(b); return err }},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPlain8 checks that plain8 never calls a word plain when one of its bytes is one str must
// look at, wherever the byte is and whatever the others are.
func TestPlain8(t *testing.T) {
	special := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 200_000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(rng.IntN(256))
			if rng.IntN(4) > 0 {
				w[i] = byte(0x20 + rng.IntN(0x60)) // mostly plain, so a lone special byte is common
			}
		}
		want := !slices.ContainsFunc(w[:], special)
		if got := plain8(binary.LittleEndian.Uint64(w[:])); got && !want {
			t.Fatalf("seed %d: plain8(%q) = true", seed, w)
		}
	}
	if !plain8(binary.LittleEndian.Uint64([]byte("abc-_/ ~"))) {
		t.Fatal("plain8 refuses plain ASCII")
	}
}
