package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/kitex_gen/kv/kvservice"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

func TestE2EPutAllThenGetAll(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC}
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = fmt.Sprintf("user/%02d/ключ", i)
		req.Entries = append(req.Entries, &kv.Entry{Key: keys[i], Value: []byte{byte(i), 0, 0xff}})
	}
	resp, err := c.PutAll(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Every entry applied at the revision: no results, each key's version is the revision.
	if resp.Applied != 16 || resp.Revision != 1 || len(resp.Results) != 0 {
		t.Fatalf("PutAll = %+v", resp)
	}
	got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: append(keys, "absent")})
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range got.Items[:16] {
		if !it.Found || it.Key != keys[i] || it.Version != resp.Revision || string(it.Value) != string([]byte{byte(i), 0, 0xff}) {
			t.Errorf("item %d = %+v; want version %d", i, it, resp.Revision)
		}
	}
	if got.Items[16].Found || got.Revision != 1 {
		t.Errorf("absent item %+v at revision %d", got.Items[16], got.Revision)
	}

	// BEST_EFFORT: a result per key.
	be, err := c.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{
		{Key: keys[0], Value: []byte("new"), ExpectedVersion: new(int64(1))},
		{Key: keys[1], Value: []byte("new"), ExpectedVersion: new(int64(0))},
		{Key: "fresh", Value: []byte("new"), TtlMs: new(int64(60_000))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	codes := []kv.ErrorCode{be.Results[0].Code, be.Results[1].Code, be.Results[2].Code}
	if be.Applied != 2 || codes[0] != kv.ErrorCode_OK || codes[1] != kv.ErrorCode_ALREADY_EXISTS || codes[2] != kv.ErrorCode_OK {
		t.Fatalf("BEST_EFFORT = %+v", be)
	}
	g, err := c.Get(ctx, &kv.GetRequest{Key: "fresh"})
	if err != nil || g.Item.ExpiresAtMs == 0 || g.Item.Version != be.Revision {
		t.Fatalf("Get fresh = %+v, %v", g, err)
	}
}

func TestE2ESingleKeyMethodsAndErrorCodes(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	p, err := c.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v")})
	if err != nil || p.Version != 1 || !p.Created {
		t.Fatalf("Put = %+v, %v", p, err)
	}
	_, err = c.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(0))})
	wantErr(t, err, kvclient.ErrAlreadyExists)
	_, err = c.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(7))})
	if e := wantErr(t, err, kvclient.ErrVersionMismatch); len(e.Failed) != 1 || e.Failed[0].Version != 1 {
		t.Fatalf("failed = %v", e.Failed)
	}
	_, err = c.Get(ctx, &kv.GetRequest{Key: "nope"})
	wantErr(t, err, kvclient.ErrNotFound)
	_, err = c.Put(ctx, &kv.PutRequest{Key: "", Value: []byte("v")})
	wantErr(t, err, kvclient.ErrInvalidArgument)
	_, err = c.Put(ctx, &kv.PutRequest{Key: strings.Repeat("k", 65), Value: []byte("v")})
	wantErr(t, err, kvclient.ErrTooLarge)
	_, err = c.Put(ctx, &kv.PutRequest{Key: "big", Value: make([]byte, 16<<10+1)})
	wantErr(t, err, kvclient.ErrTooLarge)

	d, err := c.Delete(ctx, &kv.DeleteRequest{Key: "k", ExpectedVersion: new(int64(1))})
	if err != nil || d.Revision != 2 {
		t.Fatalf("Delete = %+v, %v", d, err)
	}
	_, err = c.Delete(ctx, &kv.DeleteRequest{Key: "k"})
	wantErr(t, err, kvclient.ErrNotFound)

	// Idempotency over the wire.
	req := &kv.PutRequest{Key: "idem", Value: []byte("1"), RequestId: new("req-1")}
	first, err := c.Put(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Put(ctx, req)
	if err != nil || !again.Replayed || again.Version != first.Version {
		t.Fatalf("replay = %+v, %v", again, err)
	}
	_, err = c.Put(ctx, &kv.PutRequest{Key: "idem", Value: []byte("2"), RequestId: new("req-1")})
	wantErr(t, err, kvclient.ErrIdempotencyConflict)

	// DeleteAll, atomic and best effort.
	if _, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a"}, {Key: "b"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "zz"}}})
	if e := wantErr(t, err, kvclient.ErrNotFound); len(e.Failed) != 1 || e.Failed[0].Key != "zz" {
		t.Fatalf("failed = %v", e.Failed)
	}
	da, err := c.DeleteAll(ctx, &kv.DeleteAllRequest{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "b"}, {Key: "zz"}}})
	if err != nil || da.Applied != 2 || da.Results[2].Code != kv.ErrorCode_NOT_FOUND {
		t.Fatalf("DeleteAll = %+v, %v", da, err)
	}
}

// TestE2EOversizedInputsRefused sends every kind of over-limit input and checks the refusal's
// code, that nothing was written, and that the server goes on serving.
func TestE2EOversizedInputsRefused(t *testing.T) {
	a, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	many := make([]*kv.Entry, 101)
	for i := range many {
		many[i] = &kv.Entry{Key: fmt.Sprint("k", i)}
	}
	// 8 values of 12 KiB: each under max_value_bytes, together over max_request_bytes (64 KiB).
	heavy := make([]*kv.Entry, 8)
	for i := range heavy {
		heavy[i] = &kv.Entry{Key: fmt.Sprint("h", i), Value: make([]byte, 12<<10)}
	}
	tests := []struct {
		name string
		req  *kv.PutAllRequest
		want error
	}{
		{"key over max_key_bytes", &kv.PutAllRequest{Entries: []*kv.Entry{{Key: strings.Repeat("x", 65)}}}, kvclient.ErrTooLarge},
		{"value over max_value_bytes", &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "v", Value: make([]byte, 16<<10+1)}}}, kvclient.ErrTooLarge},
		{"batch over max_batch_entries", &kv.PutAllRequest{Entries: many}, kvclient.ErrTooLarge},
		{"request over max_request_bytes", &kv.PutAllRequest{Entries: heavy}, kvclient.ErrTooLarge},
		{"duplicate key", &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "d"}, {Key: "d"}}}, kvclient.ErrInvalidArgument},
		{"unknown mode", &kv.PutAllRequest{Mode: 9, Entries: []*kv.Entry{{Key: "m"}}}, kvclient.ErrInvalidArgument},
		{"empty batch", &kv.PutAllRequest{}, kvclient.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.PutAll(ctx, tc.req)
			wantErr(t, err, tc.want)
			// Still serving, and nothing was written.
			if _, err := c.Put(ctx, &kv.PutRequest{Key: "alive", Value: []byte("yes")}); err != nil {
				t.Fatalf("server stopped serving after %s: %v", tc.name, err)
			}
		})
	}
	got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"v", "k0", "h0", "d", "m"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got.Items {
		if it.Found {
			t.Errorf("refused request wrote %q", it.Key)
		}
	}
	if a.Engine().Stats().Keys != 1 {
		t.Errorf("store holds %d keys; want only \"alive\"", a.Engine().Stats().Keys)
	}
}

func TestE2EConcurrentAtomicBatchesAreNeverSeenHalfApplied(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	keys := []string{"x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"}
	batch := func(v string) *kv.PutAllRequest {
		r := &kv.PutAllRequest{}
		for _, k := range keys {
			r.Entries = append(r.Entries, &kv.Entry{Key: k, Value: []byte(v)})
		}
		return r
	}
	if _, err := c.PutAll(ctx, batch("init")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if _, err := c.PutAll(ctx, batch(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				got, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
				if err != nil {
					t.Error(err)
					return
				}
				for _, it := range got.Items {
					if string(it.Value) != string(got.Items[0].Value) || it.Version != got.Items[0].Version {
						t.Errorf("mixed read: %q@%d and %q@%d", it.Value, it.Version, got.Items[0].Value, got.Items[0].Version)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestE2ECallerDeadlinesRacingResponses ends thousands of calls while their responses are in
// flight: the SDK shuts the call's connection down when the caller's deadline passes, which
// must fail only that call, never corrupt the transport (a connection closed under a reader
// once left netpoll's operator cache broken and later dials spinning forever).
func TestE2ECallerDeadlinesRacingResponses(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	req := &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "k", Value: []byte("v")}}}
	const workers, calls = 8, 1500
	var ok, ended atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				// Deadlines from 20 to 419 µs: around the time a call takes here, so some
				// end before the request is sent, some while the response is being read.
				d := time.Duration(20+(i*37+w*11)%400) * time.Microsecond
				deadline := time.Now().Add(d)
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				_, err := c.PutAll(ctx, req)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					ended.Add(1)
				default:
					t.Errorf("call with a %v deadline, %v after it: %v; want success or a deadline error", d, time.Since(deadline), err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("calls still running after 2m (%d succeeded, %d ended): the transport hangs", ok.Load(), ended.Load())
	}
	t.Logf("%d calls succeeded, %d ended by their deadline", ok.Load(), ended.Load())
	if ended.Load() == 0 {
		t.Error("no call ended by its deadline: the test raced nothing")
	}
	// The client still works with time to spare.
	if _, err := c.PutAll(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func TestE2EMetricsEndpoint(t *testing.T) {
	a, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	if _, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a"}, {Key: "b"}}}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Get(ctx, &kv.GetRequest{Key: "missing"})
	body := scrape(t, a)
	for _, want := range []string{
		`putallkv_putall_batch_size_bucket{le="2"} 1`,
		`putallkv_putall_latency_seconds_count{mode="atomic",outcome="ok"} 1`,
		`putallkv_kv_requests_total{code="NOT_FOUND",method="Get"} 1`,
		`putallkv_kv_requests_total{code="OK",method="PutAll"} 1`,
		"putallkv_store_keys 2",
		"putallkv_store_revision 1",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(testnet.Get(t, "http://"+a.AdminAddr()+"/debug/pprof/"), "goroutine") {
		t.Error("/debug/pprof/ does not list profiles")
	}
}

// TestE2EMetricsNamespace checks that every series a server with a durable store and a gateway
// exports is its own, under putallkv_, or one of the standard ones: the Go runtime's, the
// process's, Kitex's and Hertz's server series, so that a shared Prometheus tells them apart
// from other programs'.
func TestE2EMetricsNamespace(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.DataDir = t.TempDir()
	a, c := startTestServer(t, cfg)
	if _, err := c.PutAll(context.Background(), &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a"}}}); err != nil {
		t.Fatal(err)
	}
	families := regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(scrape(t, a), -1)
	own := 0
	for _, f := range families {
		switch name := f[1]; {
		case strings.HasPrefix(name, "putallkv_"):
			own++
		case !slices.ContainsFunc([]string{"go_", "process_", "kitex_server_", "hertz_server_"}, func(p string) bool { return strings.HasPrefix(name, p) }):
			t.Errorf("series %s is outside the putallkv_ namespace and the standard ones", name)
		}
	}
	// The service's, the log's, the RPC guard's, the gateway's and build_info.
	for _, want := range []string{"putallkv_kv_requests_total", "putallkv_wal_fsync_seconds",
		"putallkv_rpc_requests_refused_total", "putallkv_gateway_http_connections", "putallkv_build_info"} {
		if !slices.ContainsFunc(families, func(f []string) bool { return f[1] == want }) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	t.Logf("%d series families, %d of them putallkv_", len(families), own)
}

// TestE2EStandardSeries checks the standard Kitex and Hertz server series on admin /metrics, and
// that a client cannot multiply them: callers naming themselves differently in TTHeader share
// one series (caller "unknown"), and HTTP requests with made-up methods make none.
func TestE2EStandardSeries(t *testing.T) {
	a, _ := startTestServer(t, testConfig(t))
	const callers = 5
	for i := range callers {
		c, err := kvservice.NewClient("putallkv", client.WithHostPorts(a.RPCAddr()),
			client.WithTransportProtocol(transport.TTHeader), client.WithMetaHandler(transmeta.ClientTTHeaderHandler),
			client.WithClientBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: fmt.Sprint("caller-", i)}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(context.Background(), &kv.GetRequest{Key: "missing"}); err == nil {
			t.Fatal("Get of a missing key succeeded")
		}
	}
	base := "http://" + a.GatewayAddr() + "/v1/kv/k"
	if code, _, body := testnet.Do(t, "GET", base, ""); code != 404 {
		t.Fatalf("GET: %d %s", code, body)
	}
	for i := range callers {
		testnet.Do(t, fmt.Sprint("MADEUP", i), base, "")
	}
	page := scrape(t, a)
	// NOT_FOUND is the API's answer, not a failed call: Kitex counts it a success.
	if n := metric(t, page, `kitex_server_throughput{callee="putallkv",caller="unknown",method="Get",retry="0",status="succeed"}`); n != callers {
		t.Errorf("kitex_server_throughput of the Gets = %v; want %d", n, callers)
	}
	if n := metric(t, page, `hertz_server_throughput{method="GET",path="/v1/kv/*key",statusCode="404"}`); n != 1 {
		t.Errorf("hertz_server_throughput of the GET = %v; want 1", n)
	}
	for _, leak := range []string{"caller-", "MADEUP"} {
		if strings.Contains(page, leak) {
			t.Errorf("/metrics has a label value the client chose (%s...)", leak)
		}
	}
}
