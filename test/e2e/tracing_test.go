package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// tracedServer starts a durable server with tracing on at ratio 1, its spans exported to an
// in-memory exporter, each as it ends: a call's server spans are all there once its answer is.
func tracedServer(t *testing.T) (*server.Server, *tracetest.InMemoryExporter) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Store.DataDir = t.TempDir()
	cfg.Tracing = config.TracingConfig{Enabled: true, Endpoint: "http://127.0.0.1:1/v1/traces", SampleRatio: 1, ServiceName: "putallkv-e2e"}
	spans := tracetest.NewInMemoryExporter()
	return testserver.Start(t, cfg, quiet, server.WithSpanExporter(spans)), spans
}

// spanTree renders spans as an indented tree of names, children in the order they started, so
// that a test states the shape it expects as text.
func spanTree(spans tracetest.SpanStubs) string {
	children := make(map[trace.SpanID][]tracetest.SpanStub)
	ids := make(map[trace.SpanID]bool)
	for _, s := range spans {
		ids[s.SpanContext.SpanID()] = true
	}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		if p := s.Parent.SpanID(); ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(level []tracetest.SpanStub, depth int)
	walk = func(level []tracetest.SpanStub, depth int) {
		slices.SortStableFunc(level, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
		for _, s := range level {
			b.WriteString(strings.Repeat("  ", depth) + s.Name + "\n")
			walk(children[s.SpanContext.SpanID()], depth+1)
		}
	}
	walk(roots, 0)
	return b.String()
}

// span returns the one span named name, failing t unless there is exactly one.
func span(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1:\n%s", len(found), name, spanTree(spans))
	}
	return found[0]
}

// attr returns the value of attribute key of s, failing t when s has none.
func attr(t *testing.T, s tracetest.SpanStub, key attribute.Key) attribute.Value {
	t.Helper()
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value
		}
	}
	t.Fatalf("span %q has no attribute %s: %v", s.Name, key, s.Attributes)
	return attribute.Value{}
}

func TestE2ETracePutAllThroughTheSDK(t *testing.T) {
	srv, serverSpans := tracedServer(t)
	clientSpans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(clientSpans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c := newClient(t, srv.RPCAddr(), kvclient.WithTracerProvider(tp))
	ctx := context.Background()

	id := "traced-1"
	req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, RequestId: &id, Entries: []*kv.Entry{
		{Key: "t/a", Value: []byte("1")}, {Key: "t/b", Value: []byte("2")}, {Key: "t/c", Value: []byte("3")}}}
	if _, err := c.PutAll(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := append(clientSpans.GetSpans(), serverSpans.GetSpans()...)
	want := `kv.KVService/PutAll
  kv.KVService/PutAll
    PutAll
      validate
      idempotency
      admission
      store.apply
        wal.wait
`
	if tree := spanTree(got); tree != want {
		t.Fatalf("span tree:\n%s\nwant:\n%s", tree, want)
	}
	client, server := clientSpans.GetSpans()[0], span(t, serverSpans.GetSpans(), "kv.KVService/PutAll")
	if client.SpanKind != trace.SpanKindClient || server.SpanKind != trace.SpanKindServer {
		t.Errorf("kinds: client span %v, server span %v", client.SpanKind, server.SpanKind)
	}
	if server.Parent.TraceID() != client.SpanContext.TraceID() || !server.Parent.IsRemote() {
		t.Errorf("the server span's parent %v is not the client span %v, sent over RPC", server.Parent, client.SpanContext)
	}
	// The trace id of the logs is the trace's id.
	if got := attr(t, server, "putallkv.request_id").AsString(); got != client.SpanContext.TraceID().String() {
		t.Errorf("putallkv.request_id = %q, want the trace id %s", got, client.SpanContext.TraceID())
	}
	putAll := span(t, serverSpans.GetSpans(), "PutAll")
	if n, mode := attr(t, putAll, "putallkv.batch.size").AsInt64(), attr(t, putAll, "putallkv.mode").AsString(); n != 3 || mode != "ATOMIC" {
		t.Errorf("PutAll span: batch size %d, mode %q; want 3, ATOMIC", n, mode)
	}
	if name, _ := putAll.Resource.Set().Value("service.name"); name.AsString() != "putallkv-e2e" {
		t.Errorf("service.name = %q, want tracing.service_name", name.AsString())
	}

	// A retry is replayed: its idempotency stage says so, and nothing is applied again.
	serverSpans.Reset()
	if resp, err := c.PutAll(ctx, req); err != nil || !resp.Replayed {
		t.Fatalf("retry: %v, %v; want replayed", resp, err)
	}
	if got := attr(t, span(t, serverSpans.GetSpans(), "idempotency"), "putallkv.replayed").AsBool(); !got {
		t.Error("the replayed call's idempotency span is not marked replayed")
	}
	if tree := spanTree(serverSpans.GetSpans()); strings.Contains(tree, "store.apply") {
		t.Errorf("a replay applied:\n%s", tree)
	}

	// A PutAllMany shows each call as a PutAll with its stages; a failing call is marked.
	serverSpans.Reset()
	many := &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{
		{Mode: kv.WriteMode_BEST_EFFORT, Entries: []*kv.Entry{{Key: "t/d", Value: []byte("4")}}},
		{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{{Key: strings.Repeat("k", 65), Value: []byte("5")}}},
	}}
	if _, err := c.PutAllMany(ctx, many); err != nil {
		t.Fatal(err)
	}
	manySpans := serverSpans.GetSpans()
	if n := attr(t, span(t, manySpans, "kv.KVService/PutAllMany"), "putallkv.calls").AsInt64(); n != 2 {
		t.Errorf("putallkv.calls = %d, want 2", n)
	}
	tree := spanTree(manySpans)
	for _, want := range []string{"kv.KVService/PutAllMany\n  PutAll\n", "\n  PutAll\n    validate\n"} {
		if !strings.Contains(tree, want) {
			t.Errorf("PutAllMany's tree lacks %q:\n%s", want, tree)
		}
	}
	if got := strings.Count(tree, "\n  PutAll\n"); got != 2 {
		t.Errorf("%d PutAll spans under the PutAllMany, want 2:\n%s", got, tree)
	}
	var failed int
	for _, s := range manySpans {
		if s.Name == "validate" && s.Status.Code != 0 {
			failed++
			if code := attr(t, s, "putallkv.code").AsString(); code != "TOO_LARGE" {
				t.Errorf("failed validation's code = %s, want TOO_LARGE", code)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed validate spans, want 1:\n%s", failed, tree)
	}
}

func TestE2ETraceHTTPPutAllJoinsTheCallersTrace(t *testing.T) {
	srv, spans := tracedServer(t)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	header := postPutAll(t, srv.GatewayAddr(), "00-"+traceID+"-"+parentID+"-01")
	want := `POST /v1/kv:putAll
  PutAll
    validate
    admission
    store.apply
      wal.wait
`
	if tree := spanTree(spans.GetSpans()); tree != want {
		t.Fatalf("span tree:\n%s\nwant:\n%s", tree, want)
	}
	root := span(t, spans.GetSpans(), "POST /v1/kv:putAll")
	if root.SpanContext.TraceID().String() != traceID || root.Parent.SpanID().String() != parentID || !root.Parent.IsRemote() {
		t.Errorf("the gateway span (trace %s, parent %s) did not join the caller's trace %s, span %s",
			root.SpanContext.TraceID(), root.Parent.SpanID(), traceID, parentID)
	}
	if got := attr(t, root, "http.response.status_code").AsInt64(); got != 200 {
		t.Errorf("http.response.status_code = %d", got)
	}
	if got := header.Get("X-Request-ID"); got != traceID {
		t.Errorf("X-Request-ID = %q, want the trace id %s", got, traceID)
	}
	putAll := span(t, spans.GetSpans(), "PutAll")
	if n, mode := attr(t, putAll, "putallkv.batch.size").AsInt64(), attr(t, putAll, "putallkv.mode").AsString(); n != 2 || mode != "BEST_EFFORT" {
		t.Errorf("PutAll span: batch size %d, mode %q; want 2, BEST_EFFORT", n, mode)
	}
}

// postPutAll posts an HTTP putAll of two keys to the gateway at addr with the W3C traceparent
// header tp, and fails t unless it is answered 200; it returns the response's headers.
func postPutAll(t *testing.T, addr, tp string) http.Header {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/v1/kv:putAll",
		strings.NewReader(`{"mode":"best_effort","entries":[{"key":"h/a","value":"1"},{"key":"h/b","value":"2"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", tp)
	status, header, body := testnet.DoRequest(t, req)
	if status != http.StatusOK {
		t.Fatalf("putAll: %d %s", status, body)
	}
	return header
}

func TestE2ETraceThroughAGatewayTier(t *testing.T) {
	srv, serverSpans := tracedServer(t)
	cfg := testConfig(t)
	cfg.Gateway.Upstream = srv.RPCAddr()
	cfg.Tracing = config.TracingConfig{Enabled: true, Endpoint: "http://127.0.0.1:1/v1/traces", SampleRatio: 1, ServiceName: "putallkv-tier"}
	tierSpans := tracetest.NewInMemoryExporter()
	tier := testserver.Start(t, cfg, quiet, server.WithSpanExporter(tierSpans))
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	postPutAll(t, tier.GatewayAddr(), "00-"+traceID+"-b7ad6b7169203331-01")
	got := append(tierSpans.GetSpans(), serverSpans.GetSpans()...)
	want := `POST /v1/kv:putAll
  kv.KVService/PutAll
    kv.KVService/PutAll
      PutAll
        validate
        admission
        store.apply
          wal.wait
`
	if tree := spanTree(got); tree != want {
		t.Fatalf("span tree across the tier and the server:\n%s\nwant:\n%s", tree, want)
	}
	for _, s := range got {
		if s.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %q is in trace %s, not the caller's %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver on a loopback port: it decodes each export's
// protobuf, counts the spans and, unless countOnly, keeps their names and their services'.
type otlpReceiver struct {
	srv       *http.Server
	ln        net.Listener
	countOnly bool

	mu       sync.Mutex
	count    int
	spans    []string
	services []string
}

func startOTLPReceiver(t testing.TB, countOnly bool) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{ln: ln, countOnly: countOnly}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.export), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

func (r *otlpReceiver) export(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var msg coltracepb.ExportTraceServiceRequest
	n := 0
	switch {
	case err != nil:
	case req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf":
		err = io.ErrUnexpectedEOF
	case r.countOnly:
		n, err = countSpans(body)
	default:
		err = proto.Unmarshal(body, &msg)
	}
	if err != nil {
		http.Error(w, "not an OTLP/HTTP protobuf export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.count += n
	for _, rs := range msg.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.count += len(ss.Spans)
		}
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				r.services = append(r.services, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, s.Name)
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func TestE2ETracesAreExportedOverOTLP(t *testing.T) {
	recv := startOTLPReceiver(t, false)
	cfg := testConfig(t)
	cfg.Tracing = config.TracingConfig{Enabled: true, Endpoint: "http://" + recv.ln.Addr().String() + "/v1/traces",
		SampleRatio: 1, ServiceName: "putallkv-otlp"}
	srv, err := server.Start(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kvclient.New([]string{srv.RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutAll(context.Background(), &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "o/a", Value: []byte("1")}}}); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	testnet.Stop(t, srv) // a graceful stop exports the spans still batched
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, want := range []string{"kv.KVService/PutAll", "PutAll", "validate", "admission", "store.apply"} {
		if !slices.Contains(recv.spans, want) {
			t.Errorf("the receiver got no %q span; got %q", want, recv.spans)
		}
	}
	if len(recv.services) == 0 || recv.services[0] != "putallkv-otlp" {
		t.Errorf("service.name of the exported spans = %q, want putallkv-otlp", recv.services)
	}
}

// countSpans counts the spans of an encoded ExportTraceServiceRequest without decoding them
// (resource_spans = 1, its scope_spans = 2, their spans = 2), so that a benchmark's receiver
// costs little beside the server it measures.
func countSpans(b []byte) (int, error) {
	n := 0
	err := eachField(b, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with the bytes of every length-delimited field num of the message b.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}
