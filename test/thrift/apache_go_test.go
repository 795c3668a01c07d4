package thrift_test

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/putallkv/putallkv/pkg/auth/authtest"
	"github.com/putallkv/putallkv/test/thrift/gen/kv"
)

// TestApacheGoClientCallsEveryMethod calls every KVService method through the Apache Thrift
// Go library, with code its compiler generated from idl/kv.thrift, over the framed binary
// protocol, against the real server.
func TestApacheGoClientCallsEveryMethod(t *testing.T) {
	callEveryMethod(t, dial(t, serve(t, testConfig(t)), framed))
}

// TestApacheTHeaderIsNotKitexTTHeader pins down that Apache Thrift's THeader transport does
// not interoperate with Kitex's TTHeader: the layouts are alike, but THeader's magic is
// 0x0FFF and TTHeader's 0x1000, so the server refuses the call as an unknown protocol and
// closes the connection (docs/clients.md says so, and how a client sends a token instead).
// The server goes on serving framed clients. Should a Kitex release learn to read THeader,
// this test fails and the page is to be rewritten.
func TestApacheTHeaderIsNotKitexTTHeader(t *testing.T) {
	addr := serve(t, testConfig(t))
	_, err := dial(t, addr, header).Get(context.Background(), &kv.GetRequest{Key: "k"})
	var te thrift.TTransportException
	if !errors.As(err, &te) {
		t.Fatalf("Get over THeader: err = %v (%T); want the connection closed (a transport error)", err, err)
	}
	_, err = dial(t, addr, framed).Get(context.Background(), &kv.GetRequest{Key: "k"})
	wantKVError(t, err, kv.ErrorCode_NOT_FOUND)
}

// callEveryMethod runs each method of c once or more on an empty store, checking results,
// versions and the KVError of each refusal.
func callEveryMethod(t *testing.T, c *kv.KVServiceClient) {
	ctx := context.Background()

	// Put creates at version 1 (the write's revision); Get reads it back.
	p, err := c.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v1")})
	if err != nil || p.Version != 1 || !p.Created || p.SuggestedBatch <= 0 {
		t.Fatalf("Put = %+v, %v; want version 1, created, a suggested batch", p, err)
	}
	g, err := c.Get(ctx, &kv.GetRequest{Key: "k"})
	if err != nil || !g.Item.Found || string(g.Item.Value) != "v1" || g.Item.Version != 1 {
		t.Fatalf("Get = %+v, %v", g, err)
	}
	_, err = c.Get(ctx, &kv.GetRequest{Key: "absent"})
	wantKVError(t, err, kv.ErrorCode_NOT_FOUND)

	// A compare-and-set on a stale version: VERSION_MISMATCH naming the key's version.
	_, err = c.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v2"), ExpectedVersion: thrift.Int64Ptr(7)})
	e := wantKVError(t, err, kv.ErrorCode_VERSION_MISMATCH)
	wantFailed(t, e, map[string]kv.ErrorCode{"k": kv.ErrorCode_VERSION_MISMATCH})
	if e.Failed[0].Version != 1 {
		t.Errorf("failed = %v; want k at its version 1", e.Failed)
	}

	// ATOMIC PutAll: one revision for all; a failing precondition refuses the whole batch,
	// listing every failing key, and writes nothing.
	pa, err := c.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
		{Key: "a", Value: []byte("A")}, {Key: "b", Value: []byte("B")},
	}})
	if err != nil || pa.Revision != 2 || pa.Applied != 2 || len(pa.Results) != 0 {
		t.Fatalf("PutAll = %+v, %v; want both keys at revision 2", pa, err)
	}
	_, err = c.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
		{Key: "a", Value: []byte("A2"), ExpectedVersion: thrift.Int64Ptr(2)},
		{Key: "b", Value: []byte("B2"), ExpectedVersion: thrift.Int64Ptr(0)},
		{Key: "c", Value: []byte("C2"), ExpectedVersion: thrift.Int64Ptr(5)},
	}})
	e = wantKVError(t, err, kv.ErrorCode_ALREADY_EXISTS, kv.ErrorCode_VERSION_MISMATCH)
	wantFailed(t, e, map[string]kv.ErrorCode{"b": kv.ErrorCode_ALREADY_EXISTS, "c": kv.ErrorCode_VERSION_MISMATCH})

	// GetAll: items in request order, all as of one revision; the refused batch wrote nothing.
	ga, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"a", "b", "c"}})
	if err != nil || ga.Revision != 2 || len(ga.Items) != 3 {
		t.Fatalf("GetAll = %+v, %v", ga, err)
	}
	for i, want := range []string{"A", "B"} {
		if it := ga.Items[i]; !it.Found || string(it.Value) != want || it.Version != 2 {
			t.Errorf("item %d = %+v; want %q at version 2", i, it, want)
		}
	}
	if ga.Items[2].Found {
		t.Errorf("c = %+v; want absent", ga.Items[2])
	}

	// Scan a key at a time, following the cursor: every key once; a made-up cursor is refused.
	scanned := map[string]string{}
	for req := (&kv.ScanRequest{Limit: 1}); ; {
		sc, err := c.Scan(ctx, req)
		if err != nil || len(sc.Items) > 1 {
			t.Fatalf("Scan = %+v, %v", sc, err)
		}
		for _, it := range sc.Items {
			scanned[it.Key] = string(it.Value)
		}
		if sc.NextCursor == "" {
			break
		}
		req.Cursor = sc.NextCursor
	}
	if len(scanned) != 3 || scanned["a"] != "A" || scanned["b"] != "B" || scanned["k"] != "v1" {
		t.Errorf("Scan found %v; want a, b and k", scanned)
	}
	_, err = c.Scan(ctx, &kv.ScanRequest{Cursor: "bm90IGEgY3Vyc29y"})
	wantKVError(t, err, kv.ErrorCode_INVALID_ARGUMENT)

	// BEST_EFFORT PutAll: a result per key, in request order.
	be, err := c.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{
		{Key: "a", Value: []byte("A3"), ExpectedVersion: thrift.Int64Ptr(2)},
		{Key: "b", Value: []byte("B3"), ExpectedVersion: thrift.Int64Ptr(0)},
	}})
	if err != nil || be.Applied != 1 || len(be.Results) != 2 ||
		be.Results[0].Code != kv.ErrorCode_OK || be.Results[0].Version != be.Revision ||
		be.Results[1].Code != kv.ErrorCode_ALREADY_EXISTS || be.Results[1].Version != 2 {
		t.Fatalf("BEST_EFFORT PutAll = %+v, %v", be, err)
	}

	// PutAllMany: each call's outcome on its own, a success and a KVError.
	pm, err := c.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{
		{Entries: []*kv.Entry{{Key: "m", Value: []byte("M")}}},
		{Entries: []*kv.Entry{{Key: "a", Value: []byte("A4"), ExpectedVersion: thrift.Int64Ptr(1)}}},
	}})
	if err != nil || len(pm.Outcomes) != 2 {
		t.Fatalf("PutAllMany = %+v, %v", pm, err)
	}
	if r := pm.Outcomes[0].Response; r == nil || r.Applied != 1 || r.Revision <= be.Revision {
		t.Errorf("PutAllMany outcome 0 = %+v; want m applied after revision %d", pm.Outcomes[0], be.Revision)
	}
	if o := pm.Outcomes[1]; o.Error == nil || o.Error.Code != kv.ErrorCode_VERSION_MISMATCH || o.Error.Message == "" {
		t.Errorf("PutAllMany outcome 1 = %+v; want VERSION_MISMATCH with a message", o)
	}

	// Delete with a precondition, then of an absent key.
	d, err := c.Delete(ctx, &kv.DeleteRequest{Key: "k", ExpectedVersion: thrift.Int64Ptr(1)})
	if err != nil || d.Revision <= be.Revision {
		t.Fatalf("Delete = %+v, %v", d, err)
	}
	_, err = c.Delete(ctx, &kv.DeleteRequest{Key: "k"})
	wantKVError(t, err, kv.ErrorCode_NOT_FOUND)

	// DeleteAll: ATOMIC refused on an absent key, then BEST_EFFORT with a result per key.
	_, err = c.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "zz"}}})
	e = wantKVError(t, err, kv.ErrorCode_NOT_FOUND)
	wantFailed(t, e, map[string]kv.ErrorCode{"zz": kv.ErrorCode_NOT_FOUND})
	da, err := c.DeleteAll(ctx, &kv.DeleteAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "b"}, {Key: "zz"}}})
	if err != nil || da.Applied != 2 || len(da.Results) != 3 || da.Results[2].Code != kv.ErrorCode_NOT_FOUND {
		t.Fatalf("DeleteAll = %+v, %v", da, err)
	}

	// Bad input: the stable code and a sentence, and the connection goes on serving.
	_, err = c.Put(ctx, &kv.PutRequest{Key: "", Value: []byte("v")})
	wantKVError(t, err, kv.ErrorCode_INVALID_ARGUMENT)
	if g, err := c.Get(ctx, &kv.GetRequest{Key: "m"}); err != nil || string(g.Item.Value) != "M" {
		t.Fatalf("Get after a refusal = %+v, %v", g, err)
	}
}

// wantKVError fails unless err is a KVError with a message and one of the codes, and
// returns it.
func wantKVError(t *testing.T, err error, codes ...kv.ErrorCode) *kv.KVError {
	t.Helper()
	var e *kv.KVError
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T); want a KVError", err, err)
	}
	for _, c := range codes {
		if e.Code == c && e.Message != "" {
			return e
		}
	}
	t.Fatalf("KVError = %+v; want one of %v with a message", e, codes)
	return nil
}

// wantFailed fails unless e.Failed names exactly the keys of want, each with its code.
func wantFailed(t *testing.T, e *kv.KVError, want map[string]kv.ErrorCode) {
	t.Helper()
	if len(e.Failed) != len(want) {
		t.Fatalf("failed = %v; want %v", e.Failed, want)
	}
	for _, f := range e.Failed {
		if code, ok := want[f.Key]; !ok || f.Code != code {
			t.Fatalf("failed = %v; want %v", e.Failed, want)
		}
	}
}

// TestApacheFramedClientHasNoToken pins down what a plain Apache Thrift client meets at a
// server with tokens: framed Thrift carries no metadata, so every call is refused
// UNAUTHENTICATED, as a KVError the client reads like any other.
func TestApacheFramedClientHasNoToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.TokenFile = authtest.New(t).File
	c := dial(t, serve(t, cfg), framed)
	_, err := c.Get(context.Background(), &kv.GetRequest{Key: "k"})
	wantKVError(t, err, kv.ErrorCode_UNAUTHENTICATED)
}
