package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/exportfile"
)

// exportCmd writes the keys with a prefix to a file in the export format (pkg/exportfile).
type exportCmd struct {
	prefix    string
	file      string
	chunkKeys int
}

func parseExport(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	c := exportCmd{}
	fs.StringVar(&c.prefix, "prefix", "", "export only the keys starting with `P`")
	fs.IntVar(&c.chunkKeys, "chunk-keys", 1000, "entries per checksummed chunk (`N`)")
	var err error
	if c.file, err = parseFile(fs, args); err != nil {
		return nil, err
	}
	if c.chunkKeys <= 0 {
		return nil, fmt.Errorf("--chunk-keys %d: want a positive number of entries", c.chunkKeys)
	}
	return c, nil
}

// exportSummary is what export prints once the file is in place.
type exportSummary struct {
	File     string `json:"file"`
	Keys     int64  `json:"keys"`
	Revision int64  `json:"revision"`
}

// do scans the prefix page by page into a scratch file beside FILE, then writes the export to
// another and renames it to FILE: FILE appears whole or not at all.
func (c exportCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	dir := filepath.Dir(c.file)
	body, err := os.CreateTemp(dir, ".putallctl-export-body-*")
	if err != nil {
		return err
	}
	defer func() { body.Close(); os.Remove(body.Name()) }()
	req := &kv.ScanRequest{Prefix: c.prefix, Snapshot: true}
	h := exportfile.Header{Prefix: c.prefix, ChunkKeys: c.chunkKeys}
	var page []*kv.Item
	done := false
	next := func() (exportfile.Entry, bool, error) {
		for len(page) == 0 {
			if done {
				return exportfile.Entry{}, false, nil
			}
			resp, err := api.Scan(ctx, req)
			if err != nil {
				return exportfile.Entry{}, false, err
			}
			page, h.Revision = resp.Items, max(h.Revision, resp.Revision)
			req.Cursor, done = resp.NextCursor, resp.NextCursor == ""
		}
		it := page[0]
		page = page[1:]
		return exportfile.Entry{Key: it.Key, Value: it.Value, Version: it.Version, ExpiresAtMs: it.ExpiresAtMs}, true, nil
	}
	if err := replaceFile(c.file, ".putallctl-export-*", func(f *os.File) error {
		return exportfile.Write(f, body, &h, next)
	}); err != nil {
		return err
	}
	s := exportSummary{File: c.file, Keys: h.Keys, Revision: h.Revision}
	if out.json {
		b, _ := json.Marshal(s)
		fmt.Fprintf(out.w, "%s\n", b)
	} else {
		fmt.Fprintf(out.w, "%s  keys=%d  revision=%d\n", s.File, s.Keys, s.Revision)
	}
	return nil
}
