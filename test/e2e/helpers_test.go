// Package e2e holds the end-to-end tests: the real server (internal/server) started in this
// process on loopback ports, driven through the real Kitex client, real HTTP and raw bytes on
// the RPC port. Every helper the tests share is in this file.
package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/leakcheck"
	"github.com/putallkv/putallkv/pkg/rpcguard"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// quiet is the log of the servers whose log no test reads.
var quiet = slog.New(slog.DiscardHandler)

// testConfig is the embedded default configuration on ephemeral loopback ports, with small
// limits the tests can reach.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	return testserver.Config(t, func(cfg *config.Config) {
		cfg.Server.MaxRequestBytes = 64 << 10
		cfg.Limits.MaxKeyBytes, cfg.Limits.MaxValueBytes, cfg.Limits.MaxBatchEntries = 64, 16<<10, 100
	})
}

// startTestServer runs the real server in-process and a real client against it; both stop
// when the test ends.
func startTestServer(t testing.TB, cfg *config.Config) (*server.Server, *kvclient.Client) {
	t.Helper()
	return startLoggedServer(t, cfg, quiet)
}

// startLoggedServer is startTestServer with the server logging to log.
func startLoggedServer(t testing.TB, cfg *config.Config, log *slog.Logger) (*server.Server, *kvclient.Client) {
	t.Helper()
	s := testserver.Start(t, cfg, log)
	return s, newClient(t, s.RPCAddr())
}

// newClient is an SDK client of addr with opts, closed when t ends.
func newClient(t testing.TB, addr string, opts ...kvclient.Option) *kvclient.Client {
	t.Helper()
	return testserver.Client(t, addr, append([]kvclient.Option{kvclient.WithRPCTimeout(10 * time.Second)}, opts...)...)
}

// wantErr fails unless err is the SDK error of code, and returns it.
func wantErr(t *testing.T, err error, sentinel error) *kvclient.Error {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v; want %v", err, sentinel)
	}
	var e *kvclient.Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("err = %#v; want a *kvclient.Error with a message", err)
	}
	return e
}

// scrape returns s's admin /metrics page.
func scrape(t *testing.T, s *server.Server) string {
	t.Helper()
	return testnet.Get(t, "http://"+s.AdminAddr()+"/metrics")
}

// metric returns the value of the sample named exactly series (labels included) on a /metrics
// page; the test fails if the page has none.
func metric(t *testing.T, page, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("/metrics has no %s", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The raw RPC helpers below speak Framed Thrift by hand, as a hostile client would, to test
// what the RPC port does with bytes no SDK sends.

var tb = thrift.Binary

// frame is a Framed Thrift request calling method with the encoded arguments struct args.
func frame(method string, args []byte) []byte {
	m := append(tb.AppendMessageBegin(nil, method, thrift.CALL, 1), args...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m...)
}

// reply is what the server answered to a raw request: the message type and, for an
// exception, the exception.
type reply struct {
	typ thrift.TMessageType
	ex  *thrift.ApplicationException
}

// rawCall sends one raw request on a new connection to addr and reads the answer.
func rawCall(addr string, req []byte) (reply, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return reply{}, err
	}
	return rawExchange(conn, req)
}

// rawExchange sends one raw request on conn, reads the answer and closes conn.
func rawExchange(conn net.Conn, req []byte) (reply, error) {
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return reply{}, err
	}
	if _, err := conn.Write(req); err != nil {
		return reply{}, err
	}
	return readReply(conn)
}

// readReply reads one Framed answer from conn.
func readReply(conn net.Conn) (reply, error) {
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return reply{}, fmt.Errorf("no answer: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return reply{}, fmt.Errorf("an answer of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return reply{}, fmt.Errorf("a cut answer: %w", err)
	}
	_, typ, _, hdr, err := tb.ReadMessageBegin(msg)
	if err != nil {
		return reply{}, fmt.Errorf("an answer with no message header: %w", err)
	}
	r := reply{typ: typ}
	if typ == thrift.EXCEPTION {
		r.ex = thrift.NewApplicationException(0, "")
		if _, err := r.ex.FastRead(msg[hdr:]); err != nil {
			return reply{}, fmt.Errorf("an unreadable exception: %w", err)
		}
	}
	return r, nil
}

// args builds Thrift binary by hand, as a hostile client would.
type args []byte

func (a args) field(t thrift.TType, id int16) args { return tb.AppendFieldBegin(a, t, id) }
func (a args) stop(n int) args                     { return append(a, make([]byte, n)...) }
func (a args) list(et thrift.TType, n int) args    { return tb.AppendListBegin(a, et, n) }
func (a args) str(s string) args                   { return tb.AppendString(a, s) }
func (a args) i32(v int32) args                    { return tb.AppendI32(a, v) }
func (a args) raw(b []byte) args                   { return append(a, b...) }

// method describes where a method's request holds its keys, values and list, so that a huge
// declared container can be put where the decoder reads one.
type method struct {
	name string
	// item puts fields into the struct that holds the request's first key (field 1) and
	// value (field 2), nested as the method's arguments nest it, and closes the arguments.
	item func(fields args) args
	// list opens the request's list field (nil when it has none), closeList closes it.
	list      func(header args) args
	elem      thrift.TType // the list's element type
	hasValue  bool
	closeList int
}

// inRequest nests fields directly in the arguments' request struct.
func inRequest(fields args) args { return args(nil).field(thrift.STRUCT, 1).raw(fields).stop(2) }

// inEntry nests fields in the first entry of the request's list field 1.
func inEntry(fields args) args {
	return args(nil).field(thrift.STRUCT, 1).field(thrift.LIST, 1).list(thrift.STRUCT, 1).raw(fields).stop(3)
}

func listField(header args) args {
	return args(nil).field(thrift.STRUCT, 1).field(thrift.LIST, 1).raw(header)
}

var methods = []method{
	{name: "Put", item: inRequest, hasValue: true},
	{name: "Get", item: inRequest},
	{name: "Delete", item: inRequest},
	{name: "PutAll", item: inEntry, hasValue: true, list: listField, elem: thrift.STRUCT, closeList: 2},
	{name: "GetAll", item: inRequest, list: listField, elem: thrift.STRING, closeList: 2},
	{name: "Scan", item: inRequest},
	{name: "DeleteAll", item: inEntry, list: listField, elem: thrift.STRUCT, closeList: 2},
	{name: "PutAllMany", hasValue: true, list: listField, elem: thrift.STRUCT, closeList: 2,
		item: func(fields args) args {
			return inEntry(args(nil).field(thrift.LIST, 1).list(thrift.STRUCT, 1).raw(fields).stop(1))
		}},
}

const hugeLen = 1<<31 - 1

// hugeContainers are, for each kind of container, the arguments of m declaring one of 2^31-1
// elements or bytes, with a few bytes after it.
func hugeContainers(m method) map[string]args {
	hugeStr := args(nil).i32(hugeLen).raw([]byte("abcd"))
	list := m.item(args(nil).field(thrift.LIST, 99).list(thrift.STRUCT, hugeLen).stop(1))
	if m.list != nil {
		list = m.list(args(nil).list(m.elem, hugeLen).raw(make([]byte, 4))).stop(m.closeList)
	}
	value := m.item(args(nil).field(thrift.STRING, 98).raw(hugeStr))
	if m.hasValue {
		value = m.item(args(nil).field(thrift.STRING, 2).raw(hugeStr))
	}
	key := m.item(args(nil).field(thrift.STRING, 1).raw(hugeStr))
	if m.name == "GetAll" {
		key = m.list(args(nil).list(thrift.STRING, 1).raw(hugeStr)).stop(m.closeList)
	}
	return map[string]args{
		"list":   list,
		"map":    m.item(args(tb.AppendMapBegin(args(nil).field(thrift.MAP, 99), thrift.STRING, thrift.STRING, hugeLen)).str("k").str("v")),
		"set":    m.item(args(tb.AppendSetBegin(args(nil).field(thrift.SET, 99), thrift.I64, hugeLen)).raw(make([]byte, 8))),
		"string": key,
		"binary": value,
	}
}

// wantRefusal fails unless r is a TypeMalformed exception whose message has want, and is
// short and free of any panic's text.
func wantRefusal(t *testing.T, what string, r reply, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if r.typ != thrift.EXCEPTION || r.ex.TypeID() != rpcguard.TypeMalformed || !strings.Contains(r.ex.Msg(), want) {
		t.Fatalf("%s: answered %v %v; want a malformed-request exception with %q", what, r.typ, r.ex, want)
	}
	wantNoPanicText(t, what, r)
}

// wantNoPanicText fails if r is an exception that shows the server's internals: a panic's
// text, a stack, a source file, or more than a short sentence.
func wantNoPanicText(t *testing.T, what string, r reply) {
	t.Helper()
	if r.ex == nil {
		return
	}
	msg := r.ex.Msg()
	for _, bad := range []string{"panic", "runtime error", "goroutine", ".go:"} {
		if strings.Contains(msg, bad) || len(msg) > 300 {
			t.Fatalf("%s: the answer %q shows the server's internals", what, msg)
		}
	}
}

// heapGrowth runs f and returns how many bytes the process allocated meanwhile.
func heapGrowth(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
