package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/exportfile"
)

// importCmd applies an export file to putallkv, chunk by chunk, each only once its SHA-256
// matched, through syncChunk: a key already holding the file's value is left alone, the others
// are written on the precondition that nothing else wrote them meanwhile. So importing a file
// a second time writes nothing. After each chunk it records in a checkpoint file how many
// chunks are applied; --resume continues after them.
type importCmd struct {
	chunkFlags
	file       string
	checkpoint string
	resume     bool
	verify     bool
}

// importCheckpoint is the checkpoint file of an import: the file's header (to tell the file
// from another) and the chunks of it applied, from the first.
type importCheckpoint struct {
	File     string            `json:"file"`
	Header   exportfile.Header `json:"header"`
	Chunks   int64             `json:"chunks"`
	Keys     int64             `json:"keys"`
	Revision int64             `json:"revision"`
}

func parseImport(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	c := &importCmd{}
	c.declare(fs, "write")
	fs.StringVar(&c.checkpoint, "checkpoint", "", "checkpoint `FILE` (default: FILE.checkpoint)")
	fs.BoolVar(&c.resume, "resume", false, "continue after the chunks the checkpoint file records as applied")
	fs.BoolVar(&c.verify, "verify-checksum", false, "after each chunk, compare the SHA-256 of what putallkv reads back with the file's; re-sync on a difference")
	var err error
	if c.file, err = parseFile(fs, args); err != nil {
		return nil, err
	}
	if c.checkpoint == "" {
		c.checkpoint = c.file + ".checkpoint"
	}
	return c, c.check()
}

func (c *importCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	f, err := os.Open(c.file)
	if err != nil {
		return err
	}
	defer f.Close()
	rd, err := exportfile.NewReader(f)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(c.file)
	if err != nil {
		return err
	}
	cp := importCheckpoint{File: abs, Header: rd.Header()}
	if c.resume {
		var old importCheckpoint
		if err := loadCheckpoint(c.checkpoint, &old); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if old.Header != cp.Header {
			return fmt.Errorf("--resume: checkpoint %s is of another export (header %+v, this file's %+v)", c.checkpoint, old.Header, cp.Header)
		}
		cp = old
		fmt.Fprintf(out.progress, "putallctl: import: resuming after chunk %d (%d keys applied)\n", cp.Chunks, cp.Keys)
	}
	var st moveStats
	w := newChunkWriter(api, &st)
	defer w.Close() // every chunk written was acknowledged by then, or its error returned
	prog := newProgress(out.progress, "imported", cp.Header.Keys)
	prog.keys = cp.Keys
	defer prog.finish()
	for n := int64(0); ; n++ {
		chunk, err := rd.Next() // checked against its SHA-256 before anything of it is applied
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if n < cp.Chunks {
			continue
		}
		now := time.Now().UnixMilli()
		items := make([]item, 0, len(chunk))
		for _, e := range chunk {
			if it, ok := exportItem(e, now); ok {
				items = append(items, it)
			} else {
				st.Skipped++
			}
		}
		st.count(items)
		for part := range slices.Chunk(items, c.chunkSize) {
			if err := copyChunk(ctx, api, w, part, c.verify, &st); err != nil {
				printFailed(out, err)
				return fmt.Errorf("chunk %d: %w", n, err)
			}
		}
		cp.Chunks, cp.Keys, cp.Revision = n+1, cp.Keys+int64(len(chunk)), max(cp.Revision, st.Revision)
		if err := saveCheckpoint(c.checkpoint, cp); err != nil {
			return err
		}
		prog.add(int64(len(chunk)))
	}
	st.report(out, "imported")
	return nil
}

// printFailed prints the keys a *chunkError reports refused.
func printFailed(out printer, err error) {
	var ce *chunkError
	if errors.As(err, &ce) {
		for _, s := range ce.Failed {
			out.print(record{Key: s.Key, Version: s.Version, Code: code(s.Code)})
		}
	}
}
