package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// TestRoutes runs every scenario against both wirings: the gateway over the handler in
// process, and over a real Kitex server through the SDK. Scenarios share one gateway per
// wiring, so each works under keys of its own (named after the subtest).
func TestRoutes(t *testing.T) {
	for _, w := range wirings {
		t.Run(w.name, func(t *testing.T) {
			e := start(t, w, nil)
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, e) })
			}
		})
	}
}

var scenarios = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"put get and conditional get", testPutGet},
	{"preconditions", testPreconditions},
	{"lost update prevented", testLostUpdate},
	{"delete", testDelete},
	{"ttl", testTTL},
	{"keys and values round-trip", testKeysAndValues},
	{"putAll atomic", testPutAllAtomic},
	{"putAll best effort", testPutAllBestEffort},
	{"deleteAll", testDeleteAll},
	{"getAll", testGetAll},
	{"idempotency replay and conflict", testIdempotency},
	{"idempotency key in flight", testInFlight},
	{"trace id", testTraceID},
	{"malformed requests", testMalformed},
	{"oversized requests", testOversized},
	{"service error codes", testServiceErrors},
	{"health and unknown routes", testHealthAndRoutes},
	{"access log and metrics", testObservability},
}

// key is a key of the running test's own.
func key(t *testing.T, s string) string { return t.Name() + "/" + s }

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// put writes value under k and returns its ETag.
func (e *env) put(t *testing.T, k, value string, headers ...string) string {
	t.Helper()
	r := e.do(t, "PUT", keyPath(k), value, headers...)
	if r.status != 200 && r.status != 201 {
		t.Fatalf("PUT %q: status %d: %s", k, r.status, r.body)
	}
	return r.header.Get("ETag")
}

// getAll reads keys through POST /v1/kv:getAll.
func (e *env) getAll(t *testing.T, keys ...string) getAllResult {
	t.Helper()
	var res getAllResult
	e.do(t, "POST", "/v1/kv:getAll", mustJSON(t, map[string]any{"keys": keys})).want(t, 200).json(t, &res)
	if len(res.Items) != len(keys) {
		t.Fatalf("getAll of %d keys returned %d items", len(keys), len(res.Items))
	}
	return res
}

func testPutGet(t *testing.T, e *env) {
	k := key(t, "k")
	var created putResult
	r := e.do(t, "PUT", keyPath(k), "v1").want(t, 201)
	r.json(t, &created)
	etag1 := r.header.Get("ETag")
	if !created.Created || created.Replayed || etag1 != formatETag(created.Version) {
		t.Fatalf("create: %+v, ETag %s", created, etag1)
	}

	g := e.do(t, "GET", keyPath(k), nil).want(t, 200)
	if string(g.body) != "v1" || g.header.Get("ETag") != etag1 || g.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET: %q, ETag %s, Content-Type %s", g.body, g.header.Get("ETag"), g.header.Get("Content-Type"))
	}
	for _, inm := range []string{etag1, "W/" + etag1, `"999999", ` + etag1, "*"} {
		nm := e.do(t, "GET", keyPath(k), nil, "If-None-Match", inm).want(t, 304)
		if len(nm.body) != 0 || nm.header.Get("ETag") != etag1 {
			t.Fatalf("304 for If-None-Match %s: body %q, ETag %s", inm, nm.body, nm.header.Get("ETag"))
		}
	}

	var replaced putResult
	r = e.do(t, "PUT", keyPath(k), "v2").want(t, 200)
	r.json(t, &replaced)
	if replaced.Created || replaced.Version <= created.Version || r.header.Get("ETag") != formatETag(replaced.Version) {
		t.Fatalf("replace: %+v after %+v, ETag %s", replaced, created, r.header.Get("ETag"))
	}
	g = e.do(t, "GET", keyPath(k), nil, "If-None-Match", etag1).want(t, 200)
	if string(g.body) != "v2" || g.header.Get("ETag") != r.header.Get("ETag") {
		t.Fatalf("GET after change: %q, ETag %s", g.body, g.header.Get("ETag"))
	}
	e.do(t, "GET", keyPath(key(t, "absent")), nil).problem(t, 404, "NOT_FOUND")
}

func testPreconditions(t *testing.T, e *env) {
	k := key(t, "k")
	etag1 := e.do(t, "PUT", keyPath(k), "v1", "If-None-Match", "*").want(t, 201).header.Get("ETag")
	p := e.do(t, "PUT", keyPath(k), "v1", "If-None-Match", "*").problem(t, 412, "ALREADY_EXISTS")
	wantFailed(t, p, keyStatus{Key: k, Code: "ALREADY_EXISTS", Version: version(t, etag1)})

	etag2 := e.do(t, "PUT", keyPath(k), "v2", "If-Match", etag1).want(t, 200).header.Get("ETag")
	p = e.do(t, "PUT", keyPath(k), "v3", "If-Match", etag1).problem(t, 412, "VERSION_MISMATCH")
	wantFailed(t, p, keyStatus{Key: k, Code: "VERSION_MISMATCH", Version: version(t, etag2)})
	if g := e.do(t, "GET", keyPath(k), nil).want(t, 200); string(g.body) != "v2" {
		t.Fatalf("value after refused write: %q", g.body)
	}
	// An absent key's version is 0, which no If-Match names.
	absent := key(t, "absent")
	p = e.do(t, "PUT", keyPath(absent), "x", "If-Match", `"1"`).problem(t, 412, "VERSION_MISMATCH")
	wantFailed(t, p, keyStatus{Key: absent, Code: "VERSION_MISMATCH", Version: 0})
}

// wantFailed checks a problem's failed member.
func wantFailed(t *testing.T, p problem, want ...keyStatus) {
	t.Helper()
	if !slices.Equal(p.Failed, want) {
		t.Fatalf("failed = %+v, want %+v", p.Failed, want)
	}
}

// version is the version an ETag names.
func version(t *testing.T, etag string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(strings.Trim(etag, `"`), 10, 64)
	if err != nil {
		t.Fatalf("ETag %q: %v", etag, err)
	}
	return v
}

// testLostUpdate has two clients read the same version and race to write it back with
// If-Match: exactly one wins, the other gets 412 and the winner's value stays.
func testLostUpdate(t *testing.T, e *env) {
	k := key(t, "counter")
	etag := e.put(t, k, "0")
	clients := []string{"alice", "bob"}
	etags := make([]string, len(clients))
	https := make([]*http.Client, len(clients))
	for i := range clients {
		https[i] = newClient(t)
		etags[i] = send(t, https[i], e.base, "GET", keyPath(k), nil).want(t, 200).header.Get("ETag")
	}
	if etags[0] != etag || etags[1] != etag {
		t.Fatalf("read ETags %v, want %s", etags, etag)
	}
	statuses := make([]int, len(clients))
	var wg sync.WaitGroup
	for i, name := range clients {
		wg.Go(func() {
			statuses[i] = send(t, https[i], e.base, "PUT", keyPath(k), name, "If-Match", etags[i]).status
		})
	}
	wg.Wait()
	slices.Sort(statuses)
	if !slices.Equal(statuses, []int{200, 412}) {
		t.Fatalf("statuses %v, want one 200 and one 412", statuses)
	}
	if v := string(e.do(t, "GET", keyPath(k), nil).want(t, 200).body); !slices.Contains(clients, v) {
		t.Fatalf("value %q, want one client's", v)
	}
}

func testDelete(t *testing.T, e *env) {
	k := key(t, "k")
	etag1 := e.put(t, k, "v1")
	etag2 := e.put(t, k, "v2")
	p := e.do(t, "DELETE", keyPath(k), nil, "If-Match", etag1).problem(t, 412, "VERSION_MISMATCH")
	wantFailed(t, p, keyStatus{Key: k, Code: "VERSION_MISMATCH", Version: version(t, etag2)})
	r := e.do(t, "DELETE", keyPath(k), nil, "If-Match", etag2).want(t, 204)
	if len(r.body) != 0 {
		t.Fatalf("204 with body %q", r.body)
	}
	e.do(t, "GET", keyPath(k), nil).problem(t, 404, "NOT_FOUND")
	e.do(t, "DELETE", keyPath(k), nil).problem(t, 404, "NOT_FOUND")
	e.put(t, k, "again")
	e.do(t, "DELETE", keyPath(k), nil).want(t, 204)
}

func testTTL(t *testing.T, e *env) {
	k := key(t, "k")
	e.do(t, "PUT", keyPath(k)+"?ttl_ms=60000", "v").want(t, 201)
	if it := e.getAll(t, k).Items[0]; !it.Found || it.ExpiresAtMs <= 0 {
		t.Fatalf("item %+v; want found with expires_at_ms", it)
	}
	e.put(t, key(t, "forever"), "v")
	if it := e.getAll(t, key(t, "forever")).Items[0]; it.ExpiresAtMs != 0 {
		t.Fatalf("item %+v; want no expiry", it)
	}
	for _, q := range []string{"?ttl_ms=soon", "?ttl_ms=0", "?ttl_ms=-5", "?ttl=5"} {
		e.do(t, "PUT", keyPath(k)+q, "v").problem(t, 400, "INVALID_ARGUMENT")
	}
}

// roundTripKeys are keys a path can mangle: slashes and dot segments, '+', '%', '?', '#',
// spaces, control characters, and non-ASCII text.
var roundTripKeys = []string{
	"plain", "a/b", "a//b", "a/../b", "../up", "./dot", "trailing/", "/leading", "//",
	"ключ", "emoji 🙂 key", "日本/語", "a+b", "100%", "q?x#y", "tab\tand\x00nul",
}

// roundTripValues are values that are not text, or barely.
var roundTripValues = [][]byte{
	allBytes(), {0xff, 0xfe, 0x00}, {}, []byte("plain text"), []byte("ünïcødé 🙂"),
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func testKeysAndValues(t *testing.T, e *env) {
	var keys []string
	var want [][]byte
	for i, k := range roundTripKeys {
		k = key(t, k)
		v := roundTripValues[i%len(roundTripValues)]
		e.do(t, "PUT", keyPath(k), v).want(t, 201)
		keys, want = append(keys, k), append(want, v)
		paths := []string{keyPath(k)}
		if !strings.ContainsAny(k, "%?#\t\x00 ") { // a key a hurried client can send unescaped
			paths = append(paths, literalPath(k))
		}
		for _, p := range paths {
			if g := e.do(t, "GET", p, nil).want(t, 200); !bytes.Equal(g.body, v) {
				t.Fatalf("GET %s: %q, want %q", p, g.body, v)
			}
		}
	}
	for i, it := range e.getAll(t, keys...).Items {
		b64, err := base64.StdEncoding.DecodeString(deref(it.ValueBase64))
		if it.Key != keys[i] || !it.Found || err != nil || !bytes.Equal(b64, want[i]) {
			t.Fatalf("item %d: %+v; want key %q, value %q", i, it, keys[i], want[i])
		}
		if utf8.Valid(want[i]) != (it.Value != nil) || it.Value != nil && *it.Value != string(want[i]) {
			t.Fatalf("item %d: value %v for bytes %q; want it exactly when they are UTF-8", i, it.Value, want[i])
		}
	}
	// '+' in a path is a plus, not a space; a key is not valid UTF-8 is refused.
	e.do(t, "PUT", keyPrefix+"plus+sign", "v").want(t, 201)
	if it := e.getAll(t, "plus+sign").Items[0]; !it.Found {
		t.Fatalf("key with '+' stored under another name")
	}
	e.do(t, "PUT", keyPrefix+"%FF", "v").problem(t, 400, "INVALID_ARGUMENT")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// entry builds one putAll entry.
func entry(k string, fields ...any) map[string]any {
	m := map[string]any{"key": k}
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i].(string)] = fields[i+1]
	}
	return m
}

func testPutAllAtomic(t *testing.T, e *env) {
	a, b, c := key(t, "a"), key(t, "b"), key(t, "c")
	r := e.do(t, "POST", "/v1/kv:putAll", mustJSON(t, map[string]any{"mode": "atomic", "entries": []any{
		entry(a, "value", "text"),
		entry(b, "value_base64", base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "ttl_ms", 60000),
		entry(c, "value", "", "expected_version", 0),
	}})).want(t, 200)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	wantShape(t, r.body, "applied", "replayed", "results", "revision", "suggested_batch")
	var res batchResult
	r.json(t, &res)
	if res.Applied != 3 || res.Replayed || len(res.Results) != 3 {
		t.Fatalf("putAll: %+v", res)
	}
	for i, k := range []string{a, b, c} {
		if want := (keyStatus{Key: k, Code: "OK", Version: res.Revision}); res.Results[i] != want {
			t.Fatalf("result %d: %+v, want %+v", i, res.Results[i], want)
		}
	}

	// One stale version and one create-only on an existing key: nothing applies, both are named.
	d := key(t, "d")
	p := e.do(t, "POST", "/v1/kv:putAll", mustJSON(t, map[string]any{"entries": []any{
		entry(d, "value", "new"),
		entry(a, "value", "x", "expected_version", res.Revision+100),
		entry(b, "value", "x", "expected_version", 0),
	}})).problem(t, 412, "VERSION_MISMATCH")
	wantFailed(t, p,
		keyStatus{Key: a, Code: "VERSION_MISMATCH", Version: res.Revision},
		keyStatus{Key: b, Code: "ALREADY_EXISTS", Version: res.Revision})
	if got := e.getAll(t, d, a); got.Items[0].Found || deref(got.Items[1].Value) != "text" {
		t.Fatalf("a refused atomic write applied something: %+v", got.Items)
	}
}

// wantShape checks the member names of a JSON object body.
func wantShape(t *testing.T, body []byte, members ...string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, members) {
		t.Fatalf("members %v, want %v in %s", got, members, body)
	}
}

func testPutAllBestEffort(t *testing.T, e *env) {
	a, b := key(t, "a"), key(t, "b")
	e.put(t, b, "old")
	var res batchResult
	e.do(t, "POST", "/v1/kv:putAll", mustJSON(t, map[string]any{"mode": "best_effort", "entries": []any{
		entry(a, "value", "new"),
		entry(b, "value", "x", "expected_version", 0),
	}})).want(t, 200).json(t, &res)
	if res.Applied != 1 || res.Results[0].Code != "OK" || res.Results[1].Code != "ALREADY_EXISTS" {
		t.Fatalf("best effort: %+v", res)
	}
}

func testDeleteAll(t *testing.T, e *env) {
	a, b, absent := key(t, "a"), key(t, "b"), key(t, "absent")
	e.put(t, a, "1")
	etagB := e.put(t, b, "2")
	var res batchResult
	e.do(t, "POST", "/v1/kv:deleteAll", mustJSON(t, map[string]any{"entries": []any{
		entry(a), entry(b, "expected_version", version(t, etagB)),
	}})).want(t, 200).json(t, &res)
	if res.Applied != 2 || res.Results[0].Code != "OK" || res.Results[1].Code != "OK" {
		t.Fatalf("deleteAll: %+v", res)
	}
	e.put(t, a, "1")
	p := e.do(t, "POST", "/v1/kv:deleteAll", mustJSON(t, map[string]any{"mode": "atomic", "entries": []any{
		entry(a), entry(absent),
	}})).problem(t, 404, "NOT_FOUND")
	wantFailed(t, p, keyStatus{Key: absent, Code: "NOT_FOUND"})
	e.do(t, "POST", "/v1/kv:deleteAll", mustJSON(t, map[string]any{"mode": "best_effort", "entries": []any{
		entry(a), entry(absent),
	}})).want(t, 200).json(t, &res)
	if res.Applied != 1 || res.Results[0].Code != "OK" || res.Results[1].Code != "NOT_FOUND" {
		t.Fatalf("best-effort deleteAll: %+v", res)
	}
}

func testGetAll(t *testing.T, e *env) {
	a, absent := key(t, "a"), key(t, "absent")
	etag := e.put(t, a, "text")
	r := e.do(t, "POST", "/v1/kv:getAll", mustJSON(t, map[string]any{"keys": []string{a, absent}})).want(t, 200)
	wantShape(t, r.body, "items", "revision")
	var res getAllResult
	r.json(t, &res)
	want := []item{
		{Key: a, Found: true, Version: version(t, etag), Value: new("text"), ValueBase64: new(base64.StdEncoding.EncodeToString([]byte("text")))},
		{Key: absent},
	}
	if res.Revision < version(t, etag) || len(res.Items) != 2 || !equalItem(res.Items[0], want[0]) || !equalItem(res.Items[1], want[1]) {
		t.Fatalf("getAll: %+v, want items %+v", res, want)
	}
}

func equalItem(a, b item) bool {
	return a.Key == b.Key && a.Found == b.Found && a.Version == b.Version && a.ExpiresAtMs == b.ExpiresAtMs &&
		deref(a.Value) == deref(b.Value) && (a.Value == nil) == (b.Value == nil) &&
		deref(a.ValueBase64) == deref(b.ValueBase64) && (a.ValueBase64 == nil) == (b.ValueBase64 == nil)
}

func testIdempotency(t *testing.T, e *env) {
	body := mustJSON(t, map[string]any{"entries": []any{entry(key(t, "a"), "value", "1")}})
	idem := key(t, "batch")
	var first, again batchResult
	r := e.do(t, "POST", "/v1/kv:putAll", body, "Idempotency-Key", idem).want(t, 200)
	r.json(t, &first)
	if first.Replayed || r.header.Get(headerReplayed) != "" {
		t.Fatalf("first call marked replayed: %+v", first)
	}
	r = e.do(t, "POST", "/v1/kv:putAll", body, "Idempotency-Key", `"`+idem+`"`).want(t, 200) // quoted: the same key
	r.json(t, &again)
	if !again.Replayed || r.header.Get(headerReplayed) != "true" || again.Revision != first.Revision {
		t.Fatalf("retry: %+v (header %q); want the replay of %+v", again, r.header.Get(headerReplayed), first)
	}
	other := mustJSON(t, map[string]any{"entries": []any{entry(key(t, "a"), "value", "2")}})
	e.do(t, "POST", "/v1/kv:putAll", other, "Idempotency-Key", idem).problem(t, 422, "IDEMPOTENCY_CONFLICT")

	// Single-key writes: the replay is the stored response, status included.
	k := key(t, "single")
	first201 := e.do(t, "PUT", keyPath(k), "v", "Idempotency-Key", key(t, "put")).want(t, 201)
	replay := e.do(t, "PUT", keyPath(k), "v", "Idempotency-Key", key(t, "put")).want(t, 201)
	if replay.header.Get(headerReplayed) != "true" || replay.header.Get("ETag") != first201.header.Get("ETag") {
		t.Fatalf("PUT replay: headers %v", replay.header)
	}
	e.do(t, "PUT", keyPath(k), "w", "Idempotency-Key", key(t, "put")).problem(t, 422, "IDEMPOTENCY_CONFLICT")
	e.do(t, "DELETE", keyPath(k), nil, "Idempotency-Key", key(t, "del")).want(t, 204)
	if r := e.do(t, "DELETE", keyPath(k), nil, "Idempotency-Key", key(t, "del")).want(t, 204); r.header.Get(headerReplayed) != "true" {
		t.Fatalf("DELETE replay not marked: %v", r.header)
	}
	// A read ignores the header.
	e.do(t, "POST", "/v1/kv:getAll", mustJSON(t, map[string]any{"keys": []string{k}}), "Idempotency-Key", idem).want(t, 200)
}

// testInFlight holds a putAll in the service and sends its retry meanwhile: 409, and once the
// first has finished, the retry replays it.
func testInFlight(t *testing.T, e *env) {
	body := mustJSON(t, map[string]any{"entries": []any{entry(holdPrefix+key(t, "a"), "value", "1")}})
	idem := key(t, "idem")
	tr := e.hold.arm()
	first := make(chan response, 1)
	c := newClient(t)
	go func() { first <- send(t, c, e.base, "POST", "/v1/kv:putAll", body, "Idempotency-Key", idem) }()
	<-tr.entered

	e.do(t, "POST", "/v1/kv:putAll", body, "Idempotency-Key", idem).problem(t, 409, codeKeyInUse)
	// Other keys are not held up.
	e.do(t, "POST", "/v1/kv:putAll", mustJSON(t, map[string]any{"entries": []any{entry(key(t, "b"), "value", "1")}}),
		"Idempotency-Key", key(t, "other")).want(t, 200)

	close(tr.release)
	(<-first).want(t, 200)
	var res batchResult
	e.do(t, "POST", "/v1/kv:putAll", body, "Idempotency-Key", idem).want(t, 200).json(t, &res)
	if !res.Replayed {
		t.Fatalf("retry after completion: %+v; want a replay", res)
	}
}

// testTraceID checks that X-Request-ID is echoed and reaches the service (over RPC as Kitex
// metadata), and that one is made up when the caller's is missing or unusable.
func testTraceID(t *testing.T, e *env) {
	k := key(t, "k")
	r := e.do(t, "PUT", keyPath(k), "v", "X-Request-ID", "trace-abc-123")
	if got := r.header.Get(headerTraceID); got != "trace-abc-123" || e.probe.traceIDOf(k) != got {
		t.Fatalf("echoed %q, server saw %q; want trace-abc-123 both", got, e.probe.traceIDOf(k))
	}
	for _, sent := range []string{"", "has space", strings.Repeat("x", 129)} {
		r := e.do(t, "PUT", keyPath(k), "v", "X-Request-ID", sent)
		got := r.header.Get(headerTraceID)
		if got == "" || got == sent || len(got) != 32 || e.probe.traceIDOf(k) != got {
			t.Fatalf("sent %q: echoed %q, server saw %q; want the same fresh id", sent, got, e.probe.traceIDOf(k))
		}
	}
}

// malformed lists requests a client can get wrong, each a clear 400.
var malformed = []struct {
	name, method, target, body string
	headers                    []string
}{
	{"truncated JSON", "POST", "/v1/kv:putAll", `{"entries":[`, nil},
	{"not JSON", "POST", "/v1/kv:putAll", `entries=1`, nil},
	{"empty body", "POST", "/v1/kv:putAll", ``, nil},
	{"two values", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x"}]} {}`, nil},
	{"array", "POST", "/v1/kv:putAll", `[]`, nil},
	{"unknown field", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x"}],"request_id":"r"}`, nil},
	{"unknown entry field", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x","vlaue":"y"}]}`, nil},
	{"version as string", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x","expected_version":"3"}]}`, nil},
	{"fractional ttl", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x","ttl_ms":1.5}]}`, nil},
	{"value as number", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":7}]}`, nil},
	{"invalid base64", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value_base64":"!!!"}]}`, nil},
	{"value and base64", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x","value_base64":"eA=="}]}`, nil},
	{"no value", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a"}]}`, nil},
	{"bad mode", "POST", "/v1/kv:putAll", `{"mode":"Atomic","entries":[{"key":"a","value":"x"}]}`, nil},
	{"no entries", "POST", "/v1/kv:putAll", `{"entries":[]}`, nil},
	{"invalid UTF-8 key", "POST", "/v1/kv:putAll", "{\"entries\":[{\"key\":\"a\xff\",\"value\":\"x\"}]}", nil},
	{"lone surrogate key", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a\ud800","value":"x"}]}`, nil},
	{"lone low surrogate value", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"\udc00x"}]}`, nil},
	{"surrogates reversed", "POST", "/v1/kv:putAll", `{"entries":[{"key":"\udc00\ud800","value":"x"}]}`, nil},
	{"surrogate then escape", "POST", "/v1/kv:putAll", `{"entries":[{"key":"\ud83d\n","value":"x"}]}`, nil},
	{"invalid UTF-8 in getAll", "POST", "/v1/kv:getAll", "{\"keys\":[\"\xc3\"]}", nil},
	{"lone surrogate in deleteAll", "POST", "/v1/kv:deleteAll", `{"entries":[{"key":"\udfff"}]}`, nil},
	{"Request-Timeout without unit", "GET", "/v1/kv/a", "", []string{"Request-Timeout", "2"}},
	{"negative Request-Timeout", "GET", "/v1/kv/a", "", []string{"Request-Timeout", "-1s"}},
	{"empty key in batch", "POST", "/v1/kv:putAll", `{"entries":[{"key":"","value":"x"}]}`, nil},
	{"duplicate key", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x"},{"key":"a","value":"y"}]}`, nil},
	{"negative version", "POST", "/v1/kv:putAll", `{"entries":[{"key":"a","value":"x","expected_version":-1}]}`, nil},
	{"keys not array", "POST", "/v1/kv:getAll", `{"keys":"a"}`, nil},
	{"empty key in getAll", "POST", "/v1/kv:getAll", `{"keys":["a",""]}`, nil},
	{"deleteAll fractional version", "POST", "/v1/kv:deleteAll", `{"entries":[{"key":"a","expected_version":1.5}]}`, nil},
	{"deleteAll create-only", "POST", "/v1/kv:deleteAll", `{"entries":[{"key":"a","expected_version":0}]}`, nil},
	{"query on batch", "POST", "/v1/kv:getAll?x=1", `{"keys":["a"]}`, nil},
	{"empty key in path", "PUT", "/v1/kv/", "v", nil},
	{"bad percent-encoding", "PUT", "/v1/kv/%zz", "v", nil},
	{"unquoted If-Match", "PUT", "/v1/kv/a", "v", []string{"If-Match", "5"}},
	{"If-Match star", "PUT", "/v1/kv/a", "v", []string{"If-Match", "*"}},
	{"If-Match zero", "PUT", "/v1/kv/a", "v", []string{"If-Match", `"0"`}},
	{"weak If-Match", "PUT", "/v1/kv/a", "v", []string{"If-Match", `W/"5"`}},
	{"If-Match list", "PUT", "/v1/kv/a", "v", []string{"If-Match", `"5", "6"`}},
	{"both preconditions", "PUT", "/v1/kv/a", "v", []string{"If-Match", `"5"`, "If-None-Match", "*"}},
	{"If-None-Match version on PUT", "PUT", "/v1/kv/a", "v", []string{"If-None-Match", `"5"`}},
	{"If-Match on GET", "GET", "/v1/kv/a", "", []string{"If-Match", `"5"`}},
	{"broken If-None-Match", "GET", "/v1/kv/a", "", []string{"If-None-Match", `"5`}},
	{"If-None-Match on DELETE", "DELETE", "/v1/kv/a", "", []string{"If-None-Match", "*"}},
	{"empty quoted Idempotency-Key", "PUT", "/v1/kv/a", "v", []string{"Idempotency-Key", `""`}},
	{"long Idempotency-Key", "PUT", "/v1/kv/a", "v", []string{"Idempotency-Key", strings.Repeat("k", 129)}},
}

func testMalformed(t *testing.T, e *env) {
	for _, m := range malformed {
		t.Run(m.name, func(t *testing.T) {
			p := e.do(t, m.method, m.target, m.body, m.headers...).problem(t, 400, "INVALID_ARGUMENT")
			t.Logf("detail: %s", p.Detail)
			e.do(t, "GET", "/healthz", nil).want(t, 200)
		})
	}
}

func testOversized(t *testing.T, e *env) {
	big := bytes.Repeat([]byte("x"), testMaxBody+1)
	manyEntries := make([]any, testMaxEntries+1)
	for i := range manyEntries {
		manyEntries[i] = entry(fmt.Sprint(i), "value", "")
	}
	cases := []struct {
		name, method, target string
		body                 any
	}{
		{"declared body", "PUT", keyPath(key(t, "k")), big},
		{"chunked body", "PUT", keyPath(key(t, "k")), bytes.NewReader(big)},
		{"declared batch", "POST", "/v1/kv:putAll", big},
		{"chunked batch", "POST", "/v1/kv:putAll", bytes.NewReader(big)},
		{"value", "PUT", keyPath(key(t, "k")), bytes.Repeat([]byte("v"), testMaxValue+1)},
		{"key", "PUT", keyPath(strings.Repeat("k", testMaxKey+1)), "v"},
		{"entries", "POST", "/v1/kv:putAll", mustJSON(t, map[string]any{"entries": manyEntries})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A fresh client each: the gateway closes a connection whose body it did not read.
			send(t, newClient(t), e.base, c.method, c.target, c.body).problem(t, 413, "TOO_LARGE")
			e.do(t, "GET", "/healthz", nil).want(t, 200)
		})
	}
	// A client that asks before sending is told 413 without sending.
	asking := newClient(t)
	asking.Transport.(*http.Transport).ExpectContinueTimeout = time.Minute // wait for the answer, however slow
	send(t, asking, e.base, "PUT", keyPath(key(t, "k")), big, "Expect", "100-continue").problem(t, 413, "TOO_LARGE")
	send(t, asking, e.base, "PUT", keyPath(key(t, "asked")), "small", "Expect", "100-continue").want(t, 201)
	// At the bound exactly, a body is read (and the value, over the service's limit, refused there).
	send(t, newClient(t), e.base, "PUT", keyPath(key(t, "k")), big[:testMaxBody]).problem(t, 413, "TOO_LARGE")
	e.do(t, "PUT", keyPath(key(t, "k")), big[:testMaxValue]).want(t, 201)
}

// testServiceErrors covers the codes the real service cannot produce yet (no admission or
// auth exists), injected by the probe behind the real handler, and a panic in the service.
func testServiceErrors(t *testing.T, e *env) {
	cases := []struct {
		code       string
		status     int
		retryAfter string
	}{
		{"RESOURCE_EXHAUSTED", 429, "2"}, // 1500ms, rounded up
		{"UNAUTHENTICATED", 401, ""},
		{"UNAVAILABLE", 503, ""},
		{"INTERNAL", 500, ""},
	}
	for _, c := range cases {
		r := e.do(t, "PUT", keyPath(faultPrefix+c.code), "v")
		r.problem(t, c.status, c.code)
		if got := r.header.Get("Retry-After"); got != c.retryAfter {
			t.Fatalf("%s: Retry-After %q, want %q", c.code, got, c.retryAfter)
		}
	}
	r := e.do(t, "PUT", keyPath(faultPrefix+"panic"), "v")
	if p := r.problem(t, 500, "INTERNAL"); strings.Contains(p.Detail, "secret") {
		t.Fatalf("a panic leaked to the caller: %q", p.Detail)
	}
	e.do(t, "GET", "/healthz", nil).want(t, 200)
}

func testHealthAndRoutes(t *testing.T, e *env) {
	var s status
	e.do(t, "GET", "/healthz", nil).want(t, 200).json(t, &s)
	if s.Status != "ok" {
		t.Fatalf("healthz: %+v", s)
	}
	e.do(t, "GET", "/readyz", nil).want(t, 200)
	e.do(t, "GET", "/nope", nil).problem(t, 404, codeRouteNotFound)
	e.do(t, "GET", "/v1/kv?limit=1&keys_only=true", nil).want(t, 200)
	e.do(t, "POST", "/v1/kv:frobnicate", "{}").problem(t, 404, codeRouteNotFound)
	for _, c := range []struct{ method, target, allow string }{
		{"PATCH", "/v1/kv/a", "GET, HEAD, PUT, DELETE"},
		{"GET", "/v1/kv:putAll", "POST"},
		{"PUT", "/v1/kv", "GET"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := e.do(t, c.method, c.target, nil)
		r.problem(t, 405, codeMethodNotAllowed)
		if r.header.Get("Allow") != c.allow {
			t.Fatalf("%s %s: Allow %q, want %q", c.method, c.target, r.header.Get("Allow"), c.allow)
		}
	}
	// A client that escapes the colon reaches the same call.
	e.do(t, "POST", "/v1/kv%3AgetAll", mustJSON(t, map[string]any{"keys": []string{"a"}})).want(t, 200)
}

// testObservability checks the access-log line and the metrics of one request: the fields the
// issue asks for, and neither the key nor the value.
func testObservability(t *testing.T, e *env) {
	k := key(t, "secret-key")
	e.do(t, "PUT", keyPath(k), "secret-value", "X-Request-ID", "obs-1").want(t, 201)
	var line map[string]any
	for l := range strings.Lines(e.logs.String()) {
		if strings.Contains(l, `"obs-1"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(l, "secret") {
				t.Fatalf("access log shows the key or value: %s", l)
			}
		}
	}
	if line["method"] != "PUT" || line["route"] != routePut || line["status"] != float64(201) ||
		line["bytes"] == nil || line["latency"] == nil || line["request_id"] != "obs-1" {
		t.Fatalf("access log line %v", line)
	}
	if n := metricValue(t, e, "putallkv_gateway_http_requests_total", "route", routePut, "status", "201"); n < 1 {
		t.Fatalf("requests{route=%q,status=201} = %v", routePut, n)
	}
	if n := metricValue(t, e, "putallkv_gateway_http_request_duration_seconds", "route", routePut); n < 1 {
		t.Fatalf("latency{route=%q} has %v observations", routePut, n)
	}
}

// metricValue is the value of the counter (or the sample count of the histogram) name with the
// given label pairs, as the registry exports it.
func metricValue(t *testing.T, e *env, name string, labels ...string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if i := slices.Index(labels, l.GetName()); i < 0 || i%2 != 0 || labels[i+1] != l.GetValue() {
					continue metrics
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
