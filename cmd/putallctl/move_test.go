package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// ctl runs putallctl against addr and returns its exit status, stdout and stderr.
func ctl(t *testing.T, addr string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"--addr", addr}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// items reads keys back: key → item (found ones only).
func items(t *testing.T, c *kvclient.Client, keys []string) map[string]*kv.Item {
	t.Helper()
	got := map[string]*kv.Item{}
	for i := 0; i < len(keys); i += 1000 {
		resp, err := c.GetAll(context.Background(), &kv.GetAllRequest{Keys: keys[i:min(i+1000, len(keys))]})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range resp.Items {
			if it.Found {
				got[it.Key] = it
			}
		}
	}
	return got
}

// ndjson writes n putall lines k/0000.. = v<i> to a file and returns its path and keys.
func ndjson(t *testing.T, n int, extra string) (string, []string) {
	t.Helper()
	var b strings.Builder
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("k/%05d", i)
		fmt.Fprintf(&b, `{"key":%q,"value":"v%d"}`+"\n", keys[i], i)
	}
	b.WriteString(extra)
	file := filepath.Join(t.TempDir(), "in.ndjson")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, keys
}

// TestRunLoad loads NDJSON lines in chunks, reports a key whose precondition fails (and
// exits 1) without losing the others, then loads an export file of them into another server.
func TestRunLoad(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	file, keys := ndjson(t, 2500, `{"key":"cond","value":"x","expected_version":5}`+"\n")
	code, out, errs := ctl(t, s.RPCAddr(), "load", "--chunk-size", "1000", file)
	if code != exitFailed || !strings.Contains(out, "cond  version=0  code=VERSION_MISMATCH") ||
		!strings.Contains(out, "loaded  keys=2501  bytes=") || !strings.Contains(out, "chunks=3  written=2500") {
		t.Fatalf("load: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "loaded 2501/2501 keys (100%)") {
		t.Errorf("progress: %q", errs)
	}
	c := testserver.Client(t, s.RPCAddr())
	if got := items(t, c, keys); len(got) != 2500 || string(got["k/01234"].Value) != "v1234" {
		t.Fatalf("%d keys read back", len(got))
	}

	export := filepath.Join(t.TempDir(), "k.export")
	if code, out, errs := ctl(t, s.RPCAddr(), "export", "--prefix", "k/", "--chunk-keys", "700", export); code != exitOK {
		t.Fatalf("export: %d %s %s", code, out, errs)
	}
	s2 := testserver.Start(t, testserver.Config(t, nil), nil)
	if code, out, errs := ctl(t, s2.RPCAddr(), "--json", "load", "--chunk-size", "500", export); code != exitOK ||
		!strings.Contains(out, `"keys":2500,`) || !strings.Contains(out, `"chunks":7,`) {
		t.Fatalf("load of an export: exit %d\n%s\n%s", code, out, errs)
	}
	if got := items(t, testserver.Client(t, s2.RPCAddr()), keys); len(got) != 2500 || string(got["k/02499"].Value) != "v2499" {
		t.Fatalf("%d keys loaded from the export", len(got))
	}
}

// TestRunLoadRetriesAdmission loads into a server whose token bucket holds a tenth of the
// keys: through the Load stream the server waits for tokens (pushback) and writes every key;
// through PutAll calls (the TLS path) the refused entries are sent again, none lost.
func TestRunLoadRetriesAdmission(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, func(c *config.Config) {
		c.Limiter = config.LimiterConfig{Rate: 20000, Burst: 300, MaxWait: 5 * time.Millisecond, MaxChunk: 100}
	}), nil)
	file, keys := ndjson(t, 3000, "")
	code, out, errs := ctl(t, s.RPCAddr(), "--json", "load", file)
	if code != exitOK || !strings.Contains(out, `"written":3000,`) {
		t.Fatalf("load: exit %d\n%s\n%s", code, out, errs)
	}
	c := testserver.Client(t, s.RPCAddr())
	if got := items(t, c, keys); len(got) != 3000 {
		t.Fatalf("%d of 3000 keys stored", len(got))
	}

	var st moveStats
	w := &refusalRetrier{transport: putAllTransport{api: c}, stats: &st}
	entries := make([]*kv.Entry, 1000)
	for i := range entries {
		entries[i] = &kv.Entry{Key: fmt.Sprintf("p/%04d", i), Value: []byte("v")}
	}
	if _, err := w.WriteChunk(context.Background(), entries); err != nil || st.Retries == 0 {
		t.Fatalf("PutAll of 1000 keys: %d retries, %v", st.Retries, err)
	}
	if got := items(t, c, keysOf(entries)); len(got) != 1000 {
		t.Fatalf("%d of 1000 keys stored through PutAll", len(got))
	}
}

// keysOf returns the entries' keys, in order.
func keysOf(entries []*kv.Entry) []string {
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	return keys
}

// exportOf writes keys k/00000.. into a fresh server (one with a TTL, one binary value) and
// exports them in chunks of chunkKeys; it returns the file and the keys.
func exportOf(t *testing.T, n, chunkKeys int) (string, []string) {
	t.Helper()
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	file, keys := ndjson(t, n, `{"key":"k/ttl","value":"t","ttl_ms":600000}`+"\n"+`{"key":"k/bin","value_base64":"AP8="}`+"\n")
	if code, out, errs := ctl(t, s.RPCAddr(), "load", file); code != exitOK {
		t.Fatalf("load: %d %s %s", code, out, errs)
	}
	export := filepath.Join(t.TempDir(), "k.export")
	if code, out, errs := ctl(t, s.RPCAddr(), "export", "--prefix", "k/", "--chunk-keys", strconv.Itoa(chunkKeys), export); code != exitOK {
		t.Fatalf("export: %d %s %s", code, out, errs)
	}
	return export, append(keys, "k/ttl", "k/bin")
}

// TestRunImportTwice imports an export, then imports it again: the second import writes
// nothing (every version is unchanged), and a key changed meanwhile is set back.
func TestRunImportTwice(t *testing.T) {
	export, keys := exportOf(t, 2000, 500)
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	c := testserver.Client(t, s.RPCAddr())
	if code, out, errs := ctl(t, s.RPCAddr(), "import", export); code != exitOK || !strings.Contains(out, "written=2002  unchanged=0") {
		t.Fatalf("import: exit %d\n%s\n%s", code, out, errs)
	}
	first := items(t, c, keys)
	if len(first) != 2002 || first["k/ttl"].ExpiresAtMs == 0 || string(first["k/bin"].Value) != "\x00\xff" {
		t.Fatalf("%d keys imported; k/ttl %+v", len(first), first["k/ttl"])
	}
	if code, out, errs := ctl(t, s.RPCAddr(), "import", export); code != exitOK || !strings.Contains(out, "written=0  unchanged=2002") {
		t.Fatalf("import again: exit %d\n%s\n%s", code, out, errs)
	}
	for k, it := range items(t, c, keys) {
		if it.Version != first[k].Version {
			t.Fatalf("%s: version %d after the second import, %d after the first", k, it.Version, first[k].Version)
		}
	}
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "k/00007", Value: []byte("changed")}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := ctl(t, s.RPCAddr(), "import", "--verify-checksum", export); code != exitOK || !strings.Contains(out, "written=1  unchanged=2001") {
		t.Fatalf("import over a changed key: exit %d\n%s\n%s", code, out, errs)
	}
	if it := items(t, c, []string{"k/00007"})["k/00007"]; string(it.Value) != "v7" {
		t.Errorf("k/00007 = %q after the import", it.Value)
	}
}

// chunkLines returns the entry lines of each chunk of an export file, in order.
func chunkLines(t *testing.T, export string) [][]string {
	t.Helper()
	b, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]string
	var cur []string
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, `{"key"`):
			cur = append(cur, l)
		case strings.HasPrefix(l, `{"chunk"`):
			chunks, cur = append(chunks, cur), nil
		}
	}
	return chunks
}

// keyOf is the key of an entry line.
func keyOf(line string) string {
	k, _ := strconv.Unquote(strings.SplitN(strings.TrimPrefix(line, `{"key":`), ",", 2)[0])
	return k
}

// TestRunImportRefusesCorruptChunk changes one byte of the second chunk: the import applies
// the first chunk, refuses the second before writing anything of it, and names the line.
func TestRunImportRefusesCorruptChunk(t *testing.T) {
	export, keys := exportOf(t, 300, 100)
	chunks := chunkLines(t, export)
	b, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	victim := chunks[1][50]
	b = bytes.Replace(b, []byte(victim), []byte(strings.Replace(victim, `"value":"`, `"value":"X`, 1)), 1)
	if err := os.WriteFile(export, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	code, out, errs := ctl(t, s.RPCAddr(), "import", export)
	if code != exitFailed || !strings.Contains(errs, "line 203: chunk 1 does not match its entries") {
		t.Fatalf("import of a corrupt file: exit %d\n%s\n%s", code, out, errs)
	}
	got := items(t, testserver.Client(t, s.RPCAddr()), keys)
	if len(got) != 100 {
		t.Errorf("%d keys stored, want the 100 of chunk 0 alone", len(got))
	}
	for _, l := range chunks[0] {
		if got[keyOf(l)] == nil {
			t.Errorf("%s of chunk 0 is missing", keyOf(l))
		}
	}
}

// lossyWriter drops the last entry of its first chunk, as a write lost on the way would.
type lossyWriter struct {
	chunkWriter
	dropped bool
}

func (w *lossyWriter) WriteChunk(ctx context.Context, entries []*kv.Entry) (int64, error) {
	if !w.dropped && len(entries) > 1 {
		w.dropped = true
		entries = entries[:len(entries)-1]
	}
	return w.chunkWriter.WriteChunk(ctx, entries)
}

// TestCopyChunkResyncs copies a chunk through a writer that loses a key: the checksum of what
// putallkv reads back differs from the source's, and the chunk is synced again, whole.
func TestCopyChunkResyncs(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	c := testserver.Client(t, s.RPCAddr())
	chunk := []item{{key: "b", value: []byte("2")}, {key: "a", value: []byte("1")}, {key: "c", value: []byte{0, 255}}}
	var st moveStats
	w := &lossyWriter{chunkWriter: newChunkWriter(c, &st)}
	defer w.Close()
	if err := copyChunk(context.Background(), c, w, chunk, true, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mismatches != 1 || st.Written != 4 || !w.dropped {
		t.Errorf("stats %+v", st)
	}
	if got := items(t, c, []string{"a", "b", "c"}); len(got) != 3 || string(got["c"].Value) != "\x00\xff" {
		t.Errorf("read back %v", got)
	}
	if sourceSum(chunk) == sourceSum(chunk[:2]) {
		t.Error("a missing key does not change the sum")
	}
}

// TestParseMoveCommands parses load, import and migrate, defaults included, and refuses what
// does not go together.
func TestParseMoveCommands(t *testing.T) {
	ok := []struct {
		args []string
		want command
	}{
		{[]string{"load", "f"}, &loadCmd{chunkFlags: chunkFlags{chunkSize: 1000}, file: "f"}},
		{[]string{"import", "f", "--resume", "--chunk-size", "10"}, &importCmd{chunkFlags: chunkFlags{chunkSize: 10}, file: "f", checkpoint: "f.checkpoint", resume: true}},
		{
			[]string{"migrate", "--from", "etcd://a:1,b:2", "--prefix", "/p/", "--resume-from", "key:/p/x,y,rev:12", "--verify-checksum"},
			&migrateCmd{chunkFlags: chunkFlags{chunkSize: 1000}, from: "etcd://a:1,b:2", prefix: "/p/", resumeFrom: "key:/p/x,y,rev:12",
				verify: true, checkpoint: "putallctl-migrate.checkpoint"},
		},
	}
	for _, tt := range ok {
		got, err := parse(tt.args, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if !reflect.DeepEqual(got.cmd, tt.want) {
			t.Errorf("%q: %#v, want %#v", tt.args, got.cmd, tt.want)
		}
	}
	if at, err := parseResumeFrom("key:/p/x,y,rev:12"); err != nil || at.Key != "/p/x,y" || at.Revision != 12 {
		t.Errorf("--resume-from: %+v %v", at, err)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"load"}, "load: want FILE, got 0"},
		{[]string{"load", "f", "--chunk-size", "0"}, "want a positive number of keys"},
		{[]string{"import", "a", "b"}, "import: want FILE, got 2"},
		{[]string{"migrate"}, "want --from etcd://HOST:PORT or redis://HOST:PORT"},
		{[]string{"migrate", "--from", "mysql://a:1"}, `--from "mysql://a:1": want etcd://`},
		{[]string{"migrate", "--from", "etcd://nocolon"}, "missing port"},
		{[]string{"migrate", "--from", "etcd://a:1", "--resume", "--resume-from", "key:k,rev:1"}, "exclude each other"},
		{[]string{"migrate", "--from", "etcd://a:1", "--resume-from", "k,rev:1"}, "want key:K,rev:R"},
		{[]string{"migrate", "--from", "etcd://a:1", "--resume-from", "key:k,rev:-3"}, "a positive integer"},
		{[]string{"migrate", "--from", "etcd://a:1", "extra"}, "want no arguments"},
	}
	for _, tt := range bad {
		if _, err := parse(tt.args, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want one containing %q", tt.args, err, tt.want)
		}
	}
}

// TestLastOfEach keeps each key once, at its last value, in order of first appearance.
func TestLastOfEach(t *testing.T) {
	v := func(s string) []byte { return []byte(s) }
	in := []item{{key: "a", value: v("1")}, {key: "b", value: v("2")}, {key: "a", value: v("3")}, {key: "c", value: v("4")}, {key: "b", value: v("5")}}
	got := lastOfEach(in)
	want := []item{{key: "a", value: v("3")}, {key: "b", value: v("5")}, {key: "c", value: v("4")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lastOfEach = %+v, want %+v", got, want)
	}
	if string(in[0].value) != "1" {
		t.Error("lastOfEach changed its input")
	}
	if once := in[:2]; &lastOfEach(once)[0] != &once[0] {
		t.Error("without repeats lastOfEach copied")
	}
}

// TestChunkWriterTransport writes through the Load stream on a plain-TCP client, keeping one
// stream for every chunk, and through PutAll on a TLS client, which cannot stream.
func TestChunkWriterTransport(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	c := testserver.Client(t, s.RPCAddr())
	var st moveStats
	w := newChunkWriter(c, &st)
	defer w.Close()
	load, ok := w.(*refusalRetrier).transport.(*loadTransport)
	if !ok {
		t.Fatalf("plain client: transport %T, want the Load stream", w.(*refusalRetrier).transport)
	}
	var last int64
	for i := range 3 {
		rev, err := w.WriteChunk(context.Background(), []*kv.Entry{{Key: fmt.Sprintf("s/%d", i), Value: []byte("v")}})
		if err != nil || rev <= last {
			t.Fatalf("chunk %d: revision %d after %d, %v", i, rev, last, err)
		}
		last = rev
	}
	if load.loader == nil || load.chunk != 3 {
		t.Errorf("3 chunks went over %d chunks of a stream (open: %v)", load.chunk, load.loader != nil)
	}
	if got := items(t, c, []string{"s/0", "s/1", "s/2"}); len(got) != 3 {
		t.Errorf("%d of 3 keys stored", len(got))
	}

	secure, err := kvclient.New([]string{s.RPCAddr()}, kvclient.WithTLS(&tls.Config{MinVersion: tls.VersionTLS13}))
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Close()
	if tr := newChunkWriter(secure, &st).(*refusalRetrier).transport; tr != (putAllTransport{api: secure}) {
		t.Errorf("TLS client: transport %T, want PutAll calls", tr)
	}
}
