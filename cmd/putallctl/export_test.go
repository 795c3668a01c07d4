package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/pairwriter"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/exportfile"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// TestRunExport exports a prefix from a real server, over pages smaller than the chunks, and
// reads the file back through exportfile's checks; a refused export leaves no file behind.
func TestRunExport(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, func(c *config.Config) { c.Limits.MaxScanEntries = 7 }), nil)
	var in strings.Builder
	for i := range 30 {
		in.WriteString(`{"key":"e/` + string(rune('a'+i%26)) + strings.Repeat("z", i/26) + `","value":"v"}` + "\n")
	}
	in.WriteString(`{"key":"other","value":"no"}` + "\n" + `{"key":"e/bin","value_base64":"AP8="}` + "\n")
	var out, errb bytes.Buffer
	if code := run([]string{"--addr", s.RPCAddr(), "putall"}, strings.NewReader(in.String()), &out, &errb); code != exitOK {
		t.Fatalf("putall: exit %d, %s", code, errb.String())
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "e.export")
	out.Reset()
	if code := run([]string{"--addr", s.RPCAddr(), "export", "--prefix", "e/", "--chunk-keys", "10", file}, nil, &out, &errb); code != exitOK {
		t.Fatalf("export: exit %d, %s", code, errb.String())
	}
	if got := out.String(); got != file+"  keys=31  revision=1\n" {
		t.Errorf("export printed %q", got)
	}
	h, entries := readExport(t, file)
	if h.Keys != 31 || h.Prefix != "e/" || h.Revision != 1 || h.ChunkKeys != 10 {
		t.Errorf("header %+v", h)
	}
	seen := map[string]string{}
	for _, e := range entries {
		seen[e.Key] = string(e.Value)
		if e.Version != 1 || !strings.HasPrefix(e.Key, "e/") {
			t.Errorf("entry %+v", e)
		}
	}
	if len(seen) != 31 || seen["e/bin"] != "\x00\xff" || seen["e/a"] != "v" {
		t.Errorf("%d keys read back: %q", len(seen), seen)
	}

	refused := filepath.Join(dir, "refused.export")
	if code := run([]string{"--addr", s.RPCAddr(), "export", "--prefix", strings.Repeat("p", 2000), refused}, nil, &out, &errb); code != exitFailed {
		t.Errorf("an export of a prefix longer than any key: exit %d", code)
	}
	left, err := os.ReadDir(dir) // scratch files are hidden: ReadDir lists them
	if err != nil || len(left) != 1 || left[0].Name() != "e.export" {
		t.Errorf("files in the directory after a refused export: %v (%v); want e.export alone", left, err)
	}
}

// TestRunExportIsOneRevision exports while a writer keeps rewriting pairs of keys in ATOMIC
// PutAll calls: in the file, both keys of every pair have the same value, and no version is
// above the header's revision.
func TestRunExportIsOneRevision(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, func(c *config.Config) { c.Limits.MaxScanEntries = 5 }), nil)
	c, err := kvclient.New([]string{s.RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const pairs = 50
	write := func(ctx context.Context, i, v int) error {
		val := []byte(strconv.Itoa(v))
		_, err := c.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
			{Key: fmt.Sprintf("pair/a/%d", i), Value: val}, {Key: fmt.Sprintf("pair/b/%d", i), Value: val}}})
		return err
	}
	stop := pairwriter.Start(t, pairs, write)
	file := filepath.Join(t.TempDir(), "pairs.export")
	var out, errb bytes.Buffer
	code := run([]string{"--addr", s.RPCAddr(), "export", "--prefix", "pair/", file}, nil, &out, &errb)
	stop()
	if code != exitOK {
		t.Fatalf("export: exit %d, %s", code, errb.String())
	}
	h, entries := readExport(t, file)
	got := map[string]string{}
	for _, e := range entries {
		got[e.Key] = string(e.Value)
		if e.Version > h.Revision {
			t.Fatalf("%q at version %d, above the header's revision %d", e.Key, e.Version, h.Revision)
		}
	}
	if len(got) != 2*pairs {
		t.Fatalf("%d keys exported, want %d", len(got), 2*pairs)
	}
	for i := range pairs {
		if a, b := got[fmt.Sprintf("pair/a/%d", i)], got[fmt.Sprintf("pair/b/%d", i)]; a != b {
			t.Fatalf("pair %d half in the file: %s and %s (revision %d)", i, a, b, h.Revision)
		}
	}
}

// readExport reads the export file at path through exportfile's checks: its header and every
// entry, in order.
func readExport(t *testing.T, path string) (exportfile.Header, []exportfile.Entry) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := exportfile.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var entries []exportfile.Entry
	for {
		chunk, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header(), entries
		}
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, chunk...)
	}
}
