package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/exportfile"
)

// longCommand is a command that runs as long as its data takes (load, import, migrate):
// --timeout bounds each call it makes, not the whole command.
type longCommand interface {
	command
	setCallTimeout(d time.Duration)
}

// chunkFlags are the flags load, import and migrate share.
type chunkFlags struct {
	chunkSize   int
	callTimeout time.Duration
}

func (c *chunkFlags) declare(fs *flag.FlagSet, what string) {
	fs.IntVar(&c.chunkSize, "chunk-size", 1000, "keys per "+what+" (`N`; at most the server's limits.max_batch_entries)")
}

func (c *chunkFlags) check() error {
	if c.chunkSize <= 0 {
		return fmt.Errorf("--chunk-size %d: want a positive number of keys", c.chunkSize)
	}
	return nil
}

func (c *chunkFlags) setCallTimeout(d time.Duration) { c.callTimeout = d }

// exportHeader is how an export file starts; load tells the two formats apart by it.
var exportHeader = []byte(`{"putallkv_export"`)

// loadCmd writes the entries of a file into putallkv a chunk at a time: NDJSON lines as
// putall reads them, or an export file (each chunk checked against its SHA-256 first). The
// writes are plain: each entry as the line says (its expected_version and ttl_ms honoured).
type loadCmd struct {
	chunkFlags
	file string
}

func parseLoad(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	c := &loadCmd{}
	c.declare(fs, "write")
	var err error
	if c.file, err = parseFile(fs, args); err != nil {
		return nil, err
	}
	return c, c.check()
}

func (c *loadCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	f, err := os.Open(c.file)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(len(exportHeader))
	var next func() ([]*kv.Entry, error)
	var total int64
	var st moveStats
	if bytes.Equal(head, exportHeader) {
		rd, err := exportfile.NewReader(br)
		if err != nil {
			return err
		}
		total = rd.Header().Keys
		next = exportEntries(rd, c.chunkSize, &st)
	} else {
		if total, err = countLines(c.file); err != nil {
			return err
		}
		next = ndjsonEntries(br, c.chunkSize)
	}
	w := newChunkWriter(api, &st)
	defer w.Close() // every chunk written was acknowledged by then, or its error returned
	prog := newProgress(out.progress, "loaded", total)
	defer prog.finish()
	for {
		entries, err := next()
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			break
		}
		st.Chunks++
		st.Keys += int64(len(entries))
		for _, e := range entries {
			st.Bytes += int64(len(e.Key) + len(e.Value))
		}
		rev, err := w.WriteChunk(ctx, entries)
		st.Revision = max(st.Revision, rev)
		failed := failedIn(err)
		if err != nil && failed == 0 {
			return err
		}
		printFailed(out, err)
		st.Failed += int64(failed)
		st.Written += int64(len(entries) - failed)
		prog.add(int64(len(entries)))
	}
	st.report(out, "loaded")
	if st.Failed > 0 {
		return fmt.Errorf("%d of %d keys failed", st.Failed, st.Keys)
	}
	return nil
}

// failedIn is how many keys err (a *chunkError, or nil) reports refused.
func failedIn(err error) int {
	var ce *chunkError
	if errors.As(err, &ce) {
		return len(ce.Failed)
	}
	return 0
}

// exportEntries returns the entries of an export file's chunks, checked, up to n at a time
// (a file's chunk may be larger than n: it is then written in parts). A key whose expiry has
// passed is left out (counted in st.Skipped); the others keep their expiry as a TTL.
func exportEntries(rd *exportfile.Reader, n int, st *moveStats) func() ([]*kv.Entry, error) {
	var pending []exportfile.Entry
	return func() ([]*kv.Entry, error) {
		var entries []*kv.Entry
		for len(entries) == 0 {
			for len(pending) == 0 {
				chunk, err := rd.Next()
				if errors.Is(err, io.EOF) {
					return nil, nil
				}
				if err != nil {
					return nil, err
				}
				pending = chunk
			}
			take := pending[:min(n, len(pending))]
			pending = pending[len(take):]
			now := time.Now().UnixMilli()
			for _, e := range take {
				it, ok := exportItem(e, now)
				if !ok {
					st.Skipped++
					continue
				}
				entry := &kv.Entry{Key: it.key, Value: it.value}
				if it.ttlMs > 0 {
					entry.TtlMs = &it.ttlMs
				}
				entries = append(entries, entry)
			}
		}
		return entries, nil
	}
}

// exportItem is an export file's entry as an item at time now (Unix ms): its expiry turned
// into the TTL left; false when it has expired.
func exportItem(e exportfile.Entry, now int64) (item, bool) {
	it := item{key: e.Key, value: e.Value}
	if e.ExpiresAtMs != 0 {
		if it.ttlMs = e.ExpiresAtMs - now; it.ttlMs <= 0 {
			return item{}, false
		}
	}
	return it, true
}

// countLines counts the non-blank lines of a regular file, for the progress display's total;
// 0 (unknown) for anything else (a pipe).
func countLines(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return 0, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, maxLine)
	var n int64
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	return n, sc.Err()
}
