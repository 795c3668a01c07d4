package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// TestProblemForEveryCode checks docs/design.md's mapping of every error code onto an HTTP status,
// for the service's error in-process (*kv.KVError) and through the SDK (*kvclient.Error).
func TestProblemForEveryCode(t *testing.T) {
	design := map[kv.ErrorCode]int{
		kv.ErrorCode_INVALID_ARGUMENT: 400, kv.ErrorCode_NOT_FOUND: 404, kv.ErrorCode_VERSION_MISMATCH: 412,
		kv.ErrorCode_ALREADY_EXISTS: 412, kv.ErrorCode_RESOURCE_EXHAUSTED: 429, kv.ErrorCode_IDEMPOTENCY_CONFLICT: 422,
		kv.ErrorCode_TOO_LARGE: 413, kv.ErrorCode_UNAUTHENTICATED: 401, kv.ErrorCode_UNAVAILABLE: 503, kv.ErrorCode_INTERNAL: 500,
		kv.ErrorCode_PERMISSION_DENIED: 403, kv.ErrorCode_CROSS_SLOT: 400,
	}
	// Every code the IDL defines after OK has its status here: a new code fails until mapped.
	for code := kv.ErrorCode_INVALID_ARGUMENT; ; code++ {
		if _, err := kv.ErrorCodeFromString(code.String()); err != nil {
			break
		}
		if _, ok := design[code]; !ok {
			t.Errorf("%s has no HTTP status in this table (docs/api.md's error table)", code)
		}
	}
	failed := []*kv.KeyStatus{{Key: "k", Code: kv.ErrorCode_VERSION_MISMATCH, Version: 7}}
	for code, status := range design {
		ke := &kv.KVError{Code: code, Message: "why", Failed: failed, RetryAfterMs: 1}
		for _, err := range []error{ke, &kvclient.Error{Code: code, Message: "why", Failed: failed, RetryAfter: time.Millisecond}, fmt.Errorf("wrapped: %w", ke)} {
			e, known := toAPIError(err)
			p := newProblem(e, "id")
			want := problem{
				Type:   "https://putallkv.dev/problems/" + strings.ReplaceAll(strings.ToLower(code.String()), "_", "-"),
				Title:  p.Title,
				Status: status, Detail: "why", Code: code.String(),
				Failed:  []keyStatus{{Key: "k", Code: "VERSION_MISMATCH", Version: 7}},
				TraceID: "id",
			}
			if !known || !reflect.DeepEqual(p, want) || p.Title == "" || e.retryAfter != time.Millisecond {
				t.Errorf("%T %s: %+v (known %v, retry after %v); want %+v", err, code, p, known, e.retryAfter, want)
			}
		}
	}
	for _, err := range []error{errors.New("boom"), &kv.KVError{Code: kv.ErrorCode_OK}, &kv.KVError{Code: 99}} {
		if e, known := toAPIError(err); known || e != internalError {
			t.Errorf("%v: %+v, known %v; want INTERNAL, unknown", err, e, known)
		}
	}
}

func TestTitles(t *testing.T) {
	for code, want := range map[string]string{
		"VERSION_MISMATCH": "Version mismatch", "NOT_FOUND": "Not found", codeKeyInUse: "Idempotency key in use",
	} {
		if got := titleOf(code); got != want {
			t.Errorf("titleOf(%s) = %q, want %q", code, got, want)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0: 1, time.Millisecond: 1, time.Second: 1, time.Second + time.Millisecond: 2, 1500 * time.Millisecond: 2, 10 * time.Second: 10,
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestParseETags(t *testing.T) {
	tests := []struct {
		in   string
		star bool
		tags []entityTag
		bad  bool
	}{
		{in: "*", star: true},
		{in: ` * `, star: true},
		{in: `"42"`, tags: []entityTag{{version: 42}}},
		{in: `W/"42"`, tags: []entityTag{{version: 42, weak: true}}},
		{in: `"1", W/"2" ,"3"`, tags: []entityTag{{version: 1}, {version: 2, weak: true}, {version: 3}}},
		{in: `"abc", ""`, tags: []entityTag{{version: -1}, {version: -1}}},
		{in: `"0", "-1", "+5", "99999999999999999999"`, tags: []entityTag{{version: -1}, {version: -1}, {version: -1}, {version: -1}}},
		{in: `"a,b"`, tags: []entityTag{{version: -1}}},
		{in: `42`, bad: true},
		{in: `"42`, bad: true},
		{in: `"1" "2"`, bad: true},
		{in: `"1",`, bad: true},
		{in: `W/`, bad: true},
		{in: ``, bad: true},
	}
	for _, tt := range tests {
		star, tags, err := parseETags("If-Match", tt.in)
		if (err != nil) != tt.bad || star != tt.star || !reflect.DeepEqual(tags, tt.tags) {
			t.Errorf("parseETags(%q) = %v, %v, %v; want %v, %v, error %v", tt.in, star, tags, err, tt.star, tt.tags, tt.bad)
		}
	}
}

// TestDecodePutAll checks the request each well-formed body decodes to; the malformed ones are
// in the HTTP tests and the fuzz test.
func TestDecodePutAll(t *testing.T) {
	seven, zero := int64(7), int64(0)
	tests := []struct {
		body string
		want *kv.PutAllRequest
	}{
		{`{"entries":[{"key":"a","value":"text"}]}`,
			&kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{{Key: "a", Value: []byte("text")}}}},
		{`{"mode":"best_effort","entries":[{"key":"a/b","value_base64":"AP8=","expected_version":7,"ttl_ms":7},{"key":"ü","value":"","expected_version":0}]}`,
			&kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{
				{Key: "a/b", Value: []byte{0, 0xff}, ExpectedVersion: &seven, TtlMs: &seven},
				{Key: "ü", Value: []byte{}, ExpectedVersion: &zero}}}},
		{` {"mode":"atomic","entries":[]} `, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{}}},
		{`{"entries":null,"mode":null}`, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{}}},
		{`{"mode":"ATOMIC","entries":[]}`, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{}}},
		{`{"mode":"BEST_EFFORT","entries":[{"key":"\ud83d\ude00\\ud800","value":"\\\u00e9"}]}`,
			&kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{{Key: "😀\\ud800", Value: []byte(`\é`)}}}},
	}
	for _, tt := range tests {
		got, err := decodePutAll([]byte(tt.body))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("decodePutAll(%s) = %+v, %v; want %+v", tt.body, got, err, tt.want)
		}
	}
}

// FuzzDecodePutAll checks, for any body, that decodePutAll never panics, refuses with
// INVALID_ARGUMENT, or returns a request that survives a round trip through the canonical
// JSON encoding unchanged. `go test` runs the seeds; `go test -fuzz FuzzDecodePutAll` explores.
func FuzzDecodePutAll(f *testing.F) {
	for _, seed := range []string{
		`{"entries":[{"key":"a","value":"text"}]}`,
		`{"mode":"best_effort","entries":[{"key":"a/b","value_base64":"AP8=","expected_version":7,"ttl_ms":60000}]}`,
		`{"mode":"atomic","entries":[{"key":"ü","value":"","expected_version":0},{"key":"b","value":"\u0000"}]}`,
		`{"entries":[{"key":"a","value":"x","value_base64":"eA=="}]}`,
		`{"entries":[{"key":"a","value_base64":"!!!"}]}`,
		`{"entries":[{"key":"a","value":1}]}`,
		`{"entries":[{"key":"a","value":"x","expected_version":1e3}]}`,
		`{"entries":[{"key":"a","value":"x","ttl_ms":99999999999999999999}]}`,
		`{"mode":"ATOMIC","entries":[]}`, `{"mode":"Atomic","entries":[]}`,
		`{"entries":[{"key":"\ud800","value":"x"}]}`, `{"entries":[{"key":"a","value":"\ud83d\ude00\udc00"}]}`,
		"{\"entries\":[{\"key\":\"\xed\xa0\x80\",\"value\":\"x\"}]}",
		`{"entries":[{"key":"a","value":"x"}],"extra":1}`,
		`{"entries":[null]}`,
		`{} {}`, `[]`, `null`, ``, `{`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodePutAll(body)
		if err != nil {
			if e, ok := err.(*apiError); !ok || e.code != kv.ErrorCode_INVALID_ARGUMENT.String() || e.detail == "" {
				t.Fatalf("decodePutAll(%q) error %#v; want INVALID_ARGUMENT with a detail", body, err)
			}
			return
		}
		again, err := decodePutAll(canonicalPutAll(t, req))
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("decodePutAll(%q) = %+v, which re-encoded decodes to %+v, %v", body, req, again, err)
		}
	})
}

// canonicalPutAll encodes req as a putAll body, every value in value_base64.
func canonicalPutAll(t *testing.T, req *kv.PutAllRequest) []byte {
	mode := map[kv.WriteMode]string{kv.WriteMode_ATOMIC: "atomic", kv.WriteMode_BEST_EFFORT: "best_effort"}[req.Mode]
	body := putAllBody{Mode: &mode, Entries: make([]entryBody, len(req.Entries))}
	for i, e := range req.Entries {
		b64 := base64.StdEncoding.EncodeToString(e.Value)
		body.Entries[i] = entryBody{Key: e.Key, ValueBase64: &b64, ExpectedVersion: e.ExpectedVersion, TTLMs: e.TtlMs}
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
