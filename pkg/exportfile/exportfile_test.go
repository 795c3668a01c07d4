package exportfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// write writes entries as a file with chunks of chunkKeys and returns its bytes.
func write(t *testing.T, entries []Entry, chunkKeys int) []byte {
	t.Helper()
	body, err := os.Create(filepath.Join(t.TempDir(), "body"))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	var out bytes.Buffer
	i := 0
	h := Header{Prefix: "p/", ChunkKeys: chunkKeys}
	err = Write(&out, body, &h, func() (Entry, bool, error) {
		h.Revision = 9 // set as the entries are read
		if i == len(entries) {
			return Entry{}, false, nil
		}
		i++
		return entries[i-1], true, nil
	})
	if err != nil || h.Keys != int64(len(entries)) || h.Format != Version {
		t.Fatalf("Write: %+v, %v", h, err)
	}
	return out.Bytes()
}

// readAll reads a file through a Reader: its header and entries, or the first error.
func readAll(b []byte) (Header, []Entry, error) {
	rd, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return Header{}, nil, err
	}
	var all []Entry
	for {
		chunk, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header(), all, nil
		}
		if err != nil {
			return rd.Header(), all, err
		}
		all = append(all, chunk...)
	}
}

func sample(n int) []Entry {
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{Key: fmt.Sprintf("p/%d", i), Value: []byte(fmt.Sprintf("v%d", i)), Version: int64(i + 1)}
	}
	entries[1].Value = []byte{0, 0xff} // not UTF-8: value_base64
	entries[2].ExpiresAtMs = 1767225600000
	entries[3].Value = bytes.Repeat([]byte("x"), 100<<10) // a line longer than the buffers
	return entries
}

// TestRoundTrip writes files of whole and partial chunks and reads them back unchanged.
func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 4, 7, 9} {
		entries := sample(max(n, 4))[:n]
		b := write(t, entries, 3)
		h, got, err := readAll(b)
		if err != nil || h.Keys != int64(n) || h.Revision != 9 || h.Prefix != "p/" || h.ChunkKeys != 3 {
			t.Fatalf("%d entries: header %+v, err %v", n, h, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(entries) {
			t.Fatalf("%d entries: read back\n%v\nwant\n%v", n, got, entries)
		}
	}
	if lines := strings.Count(string(write(t, sample(7), 3)), "\n"); lines != 1+7+3+1 {
		t.Fatalf("%d lines; want a header, 7 entries, 3 chunk lines and a trailer", lines)
	}
}

// TestDamageIsRefused changes, cuts, drops and reorders a file's lines: the Reader refuses
// each, saying where, and hands out no chunk it could not check.
func TestDamageIsRefused(t *testing.T) {
	good := write(t, sample(7), 3)
	lines := strings.SplitAfter(string(good), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline
	join := func(ls ...string) []byte { return []byte(strings.Join(ls, "")) }
	flip := func(s string) string { return strings.Replace(s, "v0", "v9", 1) }
	cases := map[string][]byte{
		"a value changed":         join(append([]string{lines[0], flip(lines[1])}, lines[2:]...)...),
		"cut before the trailer":  join(lines[:len(lines)-1]...),
		"cut mid-line":            good[:len(good)-5],
		"an entry dropped":        join(append([]string{lines[0]}, lines[2:]...)...),
		"chunks swapped":          join(append(append(append([]string{lines[0]}, lines[5:9]...), lines[1:5]...), lines[9:]...)...),
		"bytes after the trailer": append(bytes.Clone(good), "{}\n"...),
		"not an export":           []byte(`{"key":"a","value":"b"}` + "\n"),
		"another version":         []byte(strings.Replace(string(good), `"putallkv_export":1`, `"putallkv_export":2`, 1)),
	}
	for name, b := range cases {
		_, got, err := readAll(b)
		if err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: err %v; want a refusal naming the line", name, err)
		}
		if name == "a value changed" && len(got) != 0 {
			t.Errorf("%s: %d entries handed out from the damaged chunk", name, len(got))
		}
	}
}
