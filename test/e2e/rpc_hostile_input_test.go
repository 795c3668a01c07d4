package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/kitex/pkg/klog"
	"golang.org/x/net/http2"

	"github.com/putallkv/putallkv/internal/syncbuf"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/rpcguard"
)

// TestE2EHugeDeclaredContainers sends, on every method, a request declaring a container
// (list, map, set, string, binary) of 2^31-1 elements in a few dozen bytes: each is answered
// as malformed without allocating for the declared size, and the server goes on serving.
// Before, the first of them made the generated decoder allocate tens of gigabytes and the
// process died ("fatal error: runtime: out of memory").
func TestE2EHugeDeclaredContainers(t *testing.T) {
	a, c := startTestServer(t, testConfig(t))
	addr := a.RPCAddr()
	// The request that first showed it (38 bytes): GetAll with a list of 2^31-1 strings.
	issue := []byte("\x00\x00\x00\x22\x80\x01\x00\x01\x00\x00\x00\x06GetAll\x00\x00\x00\x01\x0c\x00\x01\x0f\x00\x01\x0b\x7f\xff\xff\xff\x00\x00\x00\x01a")
	// A list header saying bool, so its 9 elements fit in 9 bytes, hiding a list of 2^31-1
	// entries where the decoder (which ignores the header's element type) reads a call.
	hidden := listField(args(nil).list(thrift.BOOL, 9).field(thrift.LIST, 1).list(thrift.STRUCT, hugeLen).stop(1)).stop(3)
	grew := heapGrowth(func() {
		r, err := rawCall(addr, issue)
		wantRefusal(t, "the 38-byte GetAll", r, err, "declares 2147483647 elements")
		r, err = rawCall(addr, frame("PutAllMany", hidden))
		wantRefusal(t, "PutAllMany hiding a list", r, err, "a list of type 2 where the schema has type 12")
		for _, m := range methods {
			for kind, body := range hugeContainers(m) {
				r, err := rawCall(addr, frame(m.name, body))
				wantRefusal(t, m.name+" with a huge "+kind, r, err, "declares 2147483647")
			}
		}
	})
	if grew > 64<<20 {
		t.Errorf("the process allocated %d MB answering requests of a few dozen bytes", grew>>20)
	}
	sent := 2 + 5*len(methods)
	page := scrape(t, a)
	if n := metric(t, page, `putallkv_rpc_requests_refused_total{reason="malformed"}`); n != float64(sent) {
		t.Errorf("putallkv_rpc_requests_refused_total{reason=\"malformed\"} = %v; want %d, one per refused request", n, sent)
	}
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "alive", Value: []byte("yes")}); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// garbage is a random request body: random bytes, half of them after the header of the
// request struct, where the decoder reads deepest.
func garbage(rng *rand.Rand) []byte {
	b := make([]byte, rng.IntN(64))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if rng.IntN(2) == 0 {
		b = append([]byte{byte(thrift.STRUCT), 0, 1}, b...)
	}
	return b
}

// TestE2EGarbagePayloads sends random bytes after a valid message header on every method:
// each gets a short answer (an exception that shows no panic, or a reply when the bytes
// happen to be a call), the server goes on serving, and its log has no stack and far fewer
// lines than requests. Before, about half of them panicked the decoder, the panic's text
// went back to the caller and each logged a 2.5 KB stack.
func TestE2EGarbagePayloads(t *testing.T) {
	var logs, kitexLogs syncbuf.Buffer
	klog.SetOutput(&kitexLogs)
	defer klog.SetOutput(os.Stderr)
	a, c := startLoggedServer(t, testConfig(t), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	const perMethod = 300
	refused := 0
	for _, m := range methods {
		for i := range perMethod {
			r, err := rawCall(a.RPCAddr(), frame(m.name, garbage(rng)))
			what := fmt.Sprintf("%s garbage #%d (seed %d)", m.name, i, seed)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			wantNoPanicText(t, what, r)
			if r.typ == thrift.EXCEPTION {
				refused++
			}
		}
	}
	t.Logf("%d of %d garbage requests refused (seed %d)", refused, perMethod*len(methods), seed)
	if refused < perMethod {
		t.Errorf("only %d garbage requests refused (seed %d): the test sent little garbage", refused, seed)
	}
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "alive", Value: []byte("yes")}); err != nil {
		t.Fatalf("the server stopped serving (seed %d): %v", seed, err)
	}
	all := logs.String() + kitexLogs.String()
	if strings.Contains(all, "goroutine") || strings.Contains(all, "stack") {
		t.Errorf("the log has a stack (seed %d):\n%.2000s", seed, all)
	}
	if lines := strings.Count(all, "\n"); lines > 50 {
		t.Errorf("%d log lines for %d refused requests (seed %d): not rate-limited:\n%.2000s", lines, refused, seed, all)
	}
	if !strings.Contains(logs.String(), "rpc request refused") {
		t.Errorf("no refusal was logged:\n%s", all)
	}
}

// TestE2EOversizedPutAllThroughSDK sends PutAlls far over server.max_request_bytes through
// the SDK: each is refused as TOO_LARGE. Before, one of 1 M entries (27 MB) reached the
// caller as UNAVAILABLE "connection closed": the server answered and closed the connection
// while the caller was still writing, and the reset discarded the answer.
//
// Writing 27 MB takes the client a while on a loaded machine under -race, so the server drains
// for up to a minute and the client waits as long: the test is about the answer arriving, not
// about how fast.
func TestE2EOversizedPutAllThroughSDK(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.DrainTimeout = time.Minute
	a, _ := startTestServer(t, cfg)
	c := newClient(t, a.RPCAddr(), kvclient.WithRPCTimeout(time.Minute))
	req := &kv.PutAllRequest{Entries: make([]*kv.Entry, 1_000_000)}
	for i := range req.Entries {
		req.Entries[i] = &kv.Entry{Key: fmt.Sprintf("key/%07d", i), Value: []byte("v")}
	}
	for range 3 {
		_, err := c.PutAll(context.Background(), req)
		if e := wantErr(t, err, kvclient.ErrTooLarge); !strings.Contains(e.Message, "server.max_request_bytes") {
			t.Fatalf("message %q does not name the setting", e.Message)
		}
	}
	if n := metric(t, scrape(t, a), `putallkv_rpc_requests_refused_total{reason="too_large"}`); n != 3 {
		t.Errorf(`putallkv_rpc_requests_refused_total{reason="too_large"} = %v; want 3`, n)
	}
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "alive", Value: []byte("yes")}); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// oversized is the start of a Framed PutAll declaring size bytes: its message header.
func oversized(size int) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(size)), tb.AppendMessageBegin(nil, "PutAll", thrift.CALL, 7)...)
}

// TestE2EOversizedRequestDrained sends an oversized request raw: the server answers
// TOO_LARGE, reads the rest (256 MiB) without holding it, and closes the connection only then;
// a request that stops arriving is cut off after server.drain_timeout.
func TestE2EOversizedRequestDrained(t *testing.T) {
	a, c := startTestServer(t, testConfig(t))
	const size = 256 << 20
	chunk := make([]byte, 1<<20)
	conn, err := net.Dial("tcp", a.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	send := func(n int) {
		for ; n > 0; n -= len(chunk) {
			if _, err := conn.Write(chunk[:min(n, len(chunk))]); err != nil {
				t.Fatalf("writing the request: %v (the server did not read it all)", err)
			}
		}
	}
	live := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC() // and what pools held
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := live()
	head := oversized(size)
	if _, err := conn.Write(head); err != nil {
		t.Fatal(err)
	}
	// Half of it sent is half of it read by the server, all but what the sockets buffer.
	send(size/2 - len(head) + 4)
	held := int64(live()) - int64(before)
	send(size / 2)
	r, err := readReply(conn)
	if err != nil || r.typ != thrift.EXCEPTION || r.ex.TypeID() != rpcguard.TypeTooLarge {
		t.Fatalf("answered %v %v, %v; want a TOO_LARGE exception", r.typ, r.ex, err)
	}
	if held > size/4 {
		t.Errorf("the server held %d MB of the %d MB of a refused request it had read", held>>20, size>>21)
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("after the answer: %d bytes, %v; want the connection closed", n, err)
	}

	cfg := testConfig(t)
	cfg.Server.DrainTimeout = 200 * time.Millisecond
	stalled, _ := startTestServer(t, cfg)
	conn, err = net.Dial("tcp", stalled.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(append(oversized(size), make([]byte, 1024)...)); err != nil {
		t.Fatal(err)
	}
	if r, err := readReply(conn); err != nil || r.ex == nil || r.ex.TypeID() != rpcguard.TypeTooLarge {
		t.Fatalf("answered %v, %v; want a TOO_LARGE exception", r, err)
	}
	// The rest never comes: the server stops waiting for it (long before this read's own
	// deadline) and closes the connection.
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a stalled oversized request: %v; want the server to close the connection", err)
	}
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "alive", Value: []byte("yes")}); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// TestE2EOtherProtocolsRefused checks that the RPC port reads framed Thrift only. An
// unframed request (whose size is not declared up front, so no limit applies) is refused
// with an answer. HTTP/2 (gRPC), which Kitex served on the same port by default through
// decoders that bypass the size limit and the checks, is not served: before, a gRPC request
// declaring a list of 2^31-1 strings crashed the process as the raw one did.
func TestE2EOtherProtocolsRefused(t *testing.T) {
	a, c := startTestServer(t, testConfig(t))
	addr := a.RPCAddr()
	body := listField(args(nil).list(thrift.STRING, hugeLen).str("a")).stop(2)

	unframed := append(tb.AppendMessageBegin(nil, "GetAll", thrift.CALL, 1), body...)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(unframed); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("reading the answer: %v", err)
	}
	if !bytes.Contains(answer, []byte("not framed")) {
		t.Errorf("an unframed request was answered %q; want a refusal saying it is not framed", answer)
	}

	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	grpcMsg := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(body))), body...)
	req, err := http.NewRequest("POST", "http://"+addr+"/kv.KVService/GetAll", bytes.NewReader(grpcMsg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc+thrift")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := tr.RoundTrip(req.WithContext(ctx)); err == nil {
		resp.Body.Close()
		t.Errorf("the RPC port served HTTP/2: %s", resp.Status)
	}
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "alive", Value: []byte("yes")}); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// FuzzRPCPort sends raw bytes to the RPC port of a real server, as the arguments of a call of
// each method: every request is answered (a reply, or an exception that shows no panic), the
// process survives, and answering does not allocate much more than the request's size. The
// corpus in testdata/fuzz holds the requests that crashed the server.
func FuzzRPCPort(f *testing.F) {
	for i, m := range methods {
		f.Add(uint8(i), []byte(m.item(args(nil).field(thrift.STRING, 1).str("fuzz"))))
	}
	a, _ := startTestServer(f, testConfig(f))
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		name := methods[int(m)%len(methods)].name
		var r reply
		var err error
		grew := heapGrowth(func() { r, err = rawCall(a.RPCAddr(), frame(name, body)) })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantNoPanicText(t, name, r)
		if grew > uint64(32*len(body)+4<<20) {
			t.Fatalf("%s: answering %d bytes allocated %d", name, len(body), grew)
		}
	})
}
