package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/gopkg/protocol/ttheader"
	"github.com/cloudwego/kitex/pkg/kerrors"

	"github.com/putallkv/putallkv/handler"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// loadChunk is chunk c of a load: n entries with keys prefix/c/i.
func loadChunk(prefix string, c int64, n int) []*kv.Entry {
	entries := make([]*kv.Entry, n)
	for i := range entries {
		entries[i] = &kv.Entry{Key: fmt.Sprintf("%s/%d/%d", prefix, c, i), Value: []byte(fmt.Sprintf("v%d.%d", c, i))}
	}
	return entries
}

// acks gathers a Loader's acknowledgements.
type acks struct {
	mu  sync.Mutex
	all []kvclient.LoadAck
}

func (a *acks) add(ack kvclient.LoadAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, ack)
}

func (a *acks) list() []kvclient.LoadAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]kvclient.LoadAck(nil), a.all...)
}

// sendAll sends chunk ch of prefix (per entries, loadChunk) for each ch of chunks, then closes
// l, failing the test on any error.
func sendAll(t *testing.T, l *kvclient.Loader, prefix string, chunks []int64, per int) {
	t.Helper()
	for _, ch := range chunks {
		if err := l.Send(context.Background(), ch, loadChunk(prefix, ch, per)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// loadInOrder loads chunks numbered first, first+1, ... (chunks of them, per keys each, under
// prefix) through one Loader with window, and returns the chunk numbers and every ack.
func loadInOrder(t *testing.T, c *kvclient.Client, window int, prefix string, first int64, chunks, per int) ([]int64, []kvclient.LoadAck) {
	t.Helper()
	var got acks
	l, err := c.NewLoader(context.Background(), kvclient.WithLoadWindow(window), kvclient.WithLoadAcks(got.add))
	if err != nil {
		t.Fatal(err)
	}
	sent := make([]int64, chunks)
	for i := range sent {
		sent[i] = first + int64(i)
	}
	sendAll(t, l, prefix, sent, per)
	return sent, got.list()
}

// cutLoader is a Loader of window 4 on ctx for the tests that cut a load short: it keeps
// every ack and closes first at the first.
func cutLoader(t *testing.T, ctx context.Context, c *kvclient.Client) (*kvclient.Loader, *acks, <-chan struct{}) {
	t.Helper()
	got := new(acks)
	first := make(chan struct{})
	var once sync.Once
	l, err := c.NewLoader(ctx, kvclient.WithLoadWindow(4), kvclient.WithLoadAcks(func(a kvclient.LoadAck) {
		got.add(a)
		once.Do(func() { close(first) })
	}))
	if err != nil {
		t.Fatal(err)
	}
	return l, got, first
}

// wantLoaded fails unless every key of chunks [0, n) of prefix reads back with its value.
func wantLoaded(t *testing.T, c *kvclient.Client, prefix string, chunks []int64, per int) {
	t.Helper()
	for _, ch := range chunks {
		entries := loadChunk(prefix, ch, per)
		keys := make([]string, len(entries))
		for i, e := range entries {
			keys[i] = e.Key
		}
		resp, err := c.GetAll(context.Background(), &kv.GetAllRequest{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range resp.Items {
			if !it.Found || string(it.Value) != string(entries[i].Value) {
				t.Fatalf("chunk %d key %s: found %v value %q; want %q", ch, keys[i], it.Found, it.Value, entries[i].Value)
			}
		}
	}
}

func TestE2ELoadWritesEveryChunkAndAcksInOrder(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	const chunks, per = 50, 100
	sent, all := loadInOrder(t, c, 4, "load", 1000, chunks, per)
	if len(all) != chunks {
		t.Fatalf("%d acks; want %d", len(all), chunks)
	}
	var last int64
	for i, a := range all {
		if a.Chunk != sent[i] || a.Err != nil || a.Applied != per || len(a.Results) != 0 || a.Revision <= last {
			t.Fatalf("ack %d = %+v; want chunk %d, %d applied at a revision after %d", i, a, sent[i], per, last)
		}
		last = a.Revision
	}
	wantLoaded(t, c, "load", sent, per)
}

func TestE2ELoadReportsFailuresPerKeyAndPerChunk(t *testing.T) {
	_, c := startTestServer(t, testConfig(t))
	ctx := context.Background()
	if _, err := c.Put(ctx, &kv.PutRequest{Key: "p/0/1", Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	var got acks
	l, err := c.NewLoader(ctx, kvclient.WithLoadAcks(got.add))
	if err != nil {
		t.Fatal(err)
	}
	created := loadChunk("p", 0, 3)
	for _, e := range created {
		e.ExpectedVersion = new(int64(0)) // create-only: p/0/1 exists
	}
	invalid := loadChunk("p", 2, 3)
	invalid[1].Key = ""
	for i, entries := range [][]*kv.Entry{created, loadChunk("p", 1, 101), invalid, loadChunk("p", 3, 2)} {
		if err := l.Send(ctx, int64(i), entries); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	all := got.list()
	if len(all) != 4 {
		t.Fatalf("%d acks; want 4", len(all))
	}
	if a := all[0]; a.Err != nil || a.Applied != 2 || len(a.Results) != 3 || a.Results[1].Code != kv.ErrorCode_ALREADY_EXISTS ||
		a.Results[0].Code != kv.ErrorCode_OK || a.Results[0].Version != a.Revision {
		t.Errorf("create-only chunk: %+v, results %v", a, a.Results)
	}
	if a := all[1]; !errors.Is(a.Err, kvclient.ErrTooLarge) || a.Applied != 0 {
		t.Errorf("chunk over limits.max_batch_entries: %+v; want TOO_LARGE", a)
	}
	if a := all[2]; !errors.Is(a.Err, kvclient.ErrInvalidArgument) || len(a.Err.Failed) != 1 || a.Err.Failed[0].Key != "" {
		t.Errorf("chunk with an empty key: %+v; want INVALID_ARGUMENT naming it", a)
	}
	if a := all[3]; a.Err != nil || a.Applied != 2 {
		t.Errorf("the chunk after the refused ones: %+v; want it written", a)
	}
	wantLoaded(t, c, "p", []int64{3}, 2)
}

// loadOne loads entries as one chunk through a Loader of c and returns the stream's error.
func loadOne(ctx context.Context, c *kvclient.Client, entries ...*kv.Entry) error {
	l, err := c.NewLoader(ctx)
	if err != nil {
		return err
	}
	if err := l.Send(ctx, 1, entries); err != nil {
		_ = l.Close()
		return err
	}
	return l.Close()
}

// streamBound is what the test servers' stream connections may hold (handler.StreamOptions).
func streamBound(cfg *config.Config) float64 {
	return float64(handler.StreamOptions(cfg.Server.MaxRequestBytes).InflightBytes)
}

// TestE2ELoadUnderTinyAdmission loads through a token bucket far smaller than the load: the
// server writes each chunk in pieces the size of the tokens in hand and waits for more rather
// than refusing, every key is written, and what the stream's connection held stayed within
// its bound.
func TestE2ELoadUnderTinyAdmission(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait, cfg.Limiter.MaxChunk = 4000, 30, 2*time.Millisecond, 25
	s, c := startTestServer(t, cfg)
	const chunks, per = 20, 100
	sent, all := loadInOrder(t, c, 8, "tiny", 0, chunks, per)
	if len(all) != chunks {
		t.Fatalf("%d acks; want %d", len(all), chunks)
	}
	for i, a := range all {
		if a.Chunk != sent[i] || a.Err != nil || a.Applied != per || a.Revision == 0 {
			t.Fatalf("ack %d = %+v; want chunk %d fully applied", i, a, sent[i])
		}
	}
	wantLoaded(t, c, "tiny", sent, per)
	page := scrape(t, s)
	pieces := metric(t, page, "putallkv_putall_chunk_size_count")
	if pieces < chunks*per/25 || metric(t, page, `putallkv_putall_chunk_size_bucket{le="32"}`) != pieces {
		t.Errorf("%v admission pieces; want at least %d, none over limiter.burst", pieces, chunks*per/25)
	}
	if peak := metric(t, page, "putallkv_stream_inflight_bytes_max"); peak <= 0 || peak > streamBound(cfg) {
		t.Errorf("the stream's connection held at most %v bytes; want within (0, %v]", peak, streamBound(cfg))
	}
}

// TestE2ELoadCutByTheClient cancels a load after its first ack: every chunk sent is either
// acknowledged (and then written) or reported unacknowledged by the Loader's error.
func TestE2ELoadCutByTheClient(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait, cfg.Limiter.MaxChunk = 2000, 20, 2*time.Millisecond, 20
	_, c := startTestServer(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, got, first := cutLoader(t, ctx, c)
	var sent []int64
	for i := range int64(30) {
		if i == 6 {
			<-first
			cancel()
		}
		if err := l.Send(ctx, i, loadChunk("cut", i, 50)); err != nil {
			break
		}
		sent = append(sent, i)
	}
	err := l.Close()
	var le *kvclient.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Close after the cut: %v; want a *kvclient.LoadError", err)
	}
	acked := got.list()
	if len(acked)+len(le.Unacked) != len(sent) {
		t.Fatalf("%d chunks sent, %d acked, unacked %v: every chunk sent must be one or the other", len(sent), len(acked), le.Unacked)
	}
	for i, a := range acked {
		if a.Chunk != sent[i] || a.Applied != 50 {
			t.Fatalf("ack %d = %+v; want chunk %d written", i, a, sent[i])
		}
	}
	for i, ch := range le.Unacked {
		if ch != sent[len(acked)+i] {
			t.Fatalf("unacked %v; want the chunks after the last ack, %v", le.Unacked, sent[len(acked):])
		}
	}
	var written []int64
	for _, a := range acked {
		written = append(written, a.Chunk)
	}
	wantLoaded(t, c, "cut", written, 50) // resuming from the last ack loses nothing
}

// TestE2ELoadCutByTheServer stops the server in the middle of a load far longer than its
// graceful shutdown: the Loader fails with UNAVAILABLE naming the unacknowledged chunks, and
// every chunk sent is either acknowledged or named.
func TestE2ELoadCutByTheServer(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.ShutdownTimeout = 500 * time.Millisecond
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait, cfg.Limiter.MaxChunk = 1000, 20, 2*time.Millisecond, 20
	s, c := startTestServer(t, cfg)
	ctx := context.Background()
	l, got, first := cutLoader(t, ctx, c)
	stopped := make(chan error, 1)
	var sent []int64
	for i := range int64(400) { // 20 000 keys at 1000 keys/s: 20 s, cut after the first ack
		if i == 6 {
			<-first
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				stopped <- s.Shutdown(sctx)
			}()
		}
		if err := l.Send(ctx, i, loadChunk("srv", i, 50)); err != nil {
			break
		}
		sent = append(sent, i)
	}
	err := l.Close()
	<-stopped
	var le *kvclient.LoadError
	if !errors.As(err, &le) || kvclient.CodeOf(err) != kv.ErrorCode_UNAVAILABLE {
		t.Fatalf("Close after the server stopped: %v; want a *kvclient.LoadError, UNAVAILABLE", err)
	}
	if n := len(got.list()); n+len(le.Unacked) != len(sent) || n == 0 || len(sent) == 400 {
		t.Fatalf("%d chunks sent, %d acked, unacked %v", len(sent), n, le.Unacked)
	}
}

// hostileChunk is a stream message of hand-made bytes (how a client other than the SDK could
// encode a LoadChunk).
type hostileChunk struct {
	kv.LoadChunk
	b []byte
}

func (h *hostileChunk) BLength() int { return len(h.b) }
func (h *hostileChunk) FastWriteNocopy(buf []byte, _ thrift.NocopyWriter) int {
	return copy(buf, h.b)
}

// TestE2ELoadHostileInput sends what the SDK never sends: a message declaring a list of 2^31
// entries (refused INVALID_ARGUMENT before it is decoded), a frame declaring 2 GB (the
// connection closed before anything of it is allocated), and a flood of chunks on a stream
// that never reads its acks while admission is slow (what the connection holds stays within
// its bound). The server keeps serving throughout.
func TestE2ELoadHostileInput(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait, cfg.Limiter.MaxChunk = 200, 10, 2*time.Millisecond, 10
	s, c := startTestServer(t, cfg)
	ctx := context.Background()

	t.Run("a list of 2^31 entries", func(t *testing.T) {
		st, err := c.Raw().Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b := tb.AppendFieldBegin(nil, thrift.LIST, 2)
		b = tb.AppendListBegin(b, thrift.STRUCT, 1<<31-1)
		b = append(b, 0)
		grown := heapGrowth(func() {
			if err := st.SendMsg(ctx, &hostileChunk{b: b}); err != nil {
				t.Fatal(err)
			}
			_, err = st.Recv(ctx)
		})
		if be, ok := kerrors.FromBizStatusError(err); !ok || kv.ErrorCode(be.BizStatusCode()) != kv.ErrorCode_INVALID_ARGUMENT {
			t.Fatalf("Recv after the hostile chunk: %v; want INVALID_ARGUMENT", err)
		}
		if grown > 64<<20 {
			t.Errorf("the process allocated %d bytes around the refusal", grown)
		}
	})

	t.Run("a frame of 2 GB", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", s.RPCAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// TTHeader: length, magic 0x1000, flags (streaming), sequence (stream) id, header size.
		head := binary.BigEndian.AppendUint32(nil, 1<<31-1)
		head = append(head, 0x10, 0x00, 0x00, byte(ttheader.HeaderFlagsStreaming))
		head = binary.BigEndian.AppendUint32(head, 1)
		head = binary.BigEndian.AppendUint16(head, 1)
		grown := heapGrowth(func() {
			if _, err := conn.Write(append(head, make([]byte, 64)...)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadAll(conn); err != nil {
				t.Fatalf("the server did not close the connection: %v", err)
			}
		})
		if grown > 64<<20 {
			t.Errorf("the process allocated %d bytes for the frame", grown)
		}
	})

	t.Run("a flood that never reads its acks", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		st, err := c.Raw().Load(fctx)
		if err != nil {
			t.Fatal(err)
		}
		value := make([]byte, 8<<10)
		flooded := make(chan int, 1)
		go func() {
			n := 0
			for ; n < 400; n++ { // 400 chunks of 5 entries of 8 KiB: 16 MB, at 200 keys/s
				entries := make([]*kv.Entry, 5)
				for i := range entries {
					entries[i] = &kv.Entry{Key: fmt.Sprintf("flood/%d/%d", n, i), Value: value}
				}
				if st.Send(fctx, &kv.LoadChunk{Chunk: int64(n), Entries: entries}) != nil {
					break
				}
			}
			flooded <- n
		}()
		// Until the connection holds most of its bound (reading waits there); then cancel.
		deadline := time.Now().Add(20 * time.Second)
		for metric(t, scrape(t, s), "putallkv_stream_inflight_bytes") < streamBound(cfg)/2 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-flooded
		if peak := metric(t, scrape(t, s), "putallkv_stream_inflight_bytes_max"); peak > streamBound(cfg) || peak < streamBound(cfg)/2 {
			t.Errorf("the flooded connection held at most %v bytes; want about its bound %v, not more", peak, streamBound(cfg))
		}
	})

	if _, err := c.Get(ctx, &kv.GetRequest{Key: "flood/0/0"}); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// TestE2ELoadOnTheDurableEngine loads into a server with a write-ahead log and reads the keys
// back after a restart: the stream goes through the service, so every engine takes it.
func TestE2ELoadOnTheDurableEngine(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.DataDir = t.TempDir()
	s, c := startTestServer(t, cfg)
	ctx := context.Background()
	l, err := c.NewLoader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := []int64{0, 1, 2, 3}
	sendAll(t, l, "wal", sent, 100)
	testnet.Stop(t, s)
	_, c2 := startTestServer(t, cfg)
	wantLoaded(t, c2, "wal", sent, 100)
}
