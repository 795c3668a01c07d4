package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// migrateCmd copies the keys under a prefix from etcd or Redis into putallkv, a chunk at a
// time: each chunk synced (syncChunk: only keys that differ are written, so a chunk applied
// twice writes nothing the second time), optionally checked by SHA-256 against what putallkv
// reads back, and recorded in a checkpoint file before the next is read.
type migrateCmd struct {
	chunkFlags
	from       string
	prefix     string
	resumeFrom string
	resume     bool
	verify     bool
	checkpoint string
}

// migrateCheckpoint is the checkpoint file of a migration: where the source is, how far the
// copy has come and, for etcd, the revision it reads at.
type migrateCheckpoint struct {
	From   string `json:"from"`
	Prefix string `json:"prefix"`
	// etcd: every key up to and including Key is copied, as of Revision; Count is how many
	// keys the prefix held at Revision.
	Key      string `json:"key,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	Count    int64  `json:"count,omitempty"`
	// Redis: the masters before Node (in address order) are copied, and Node's SCAN has
	// returned every key up to Cursor (0: Node not started).
	Node   string `json:"node,omitempty"`
	Cursor uint64 `json:"cursor,omitempty"`
	// Keys and Chunks copied so far, across the runs of this migration.
	Keys   int64 `json:"keys"`
	Chunks int64 `json:"chunks"`
}

// source is where a migration reads: it hands out the keys under the prefix a chunk at a time
// and says where it is, for the checkpoint.
type source interface {
	// next returns the next chunk (possibly empty before the end), and false once the source
	// has no more.
	next(ctx context.Context) ([]item, bool, error)
	// position fills in cp's source fields for what next has returned so far.
	position(cp *migrateCheckpoint)
	// total is the number of keys the copy covers, 0 when the source cannot tell.
	total() int64
	// skipped counts the keys left out, of a kind putallkv cannot hold.
	skipped() int64
	// drift counts the keys changed and deleted in the source since the copy read them, and
	// names some changed ones; a source that cannot tell returns -1 for both.
	drift(ctx context.Context) (changed, deleted int64, some []string, err error)
	close()
}

func parseMigrate(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	c := &migrateCmd{}
	c.declare(fs, "chunk")
	fs.StringVar(&c.from, "from", "", "the source: etcd://HOST:PORT[,HOST:PORT...] or redis://HOST:PORT[,...] (`URL`)")
	fs.StringVar(&c.prefix, "prefix", "", "copy the keys starting with `P`")
	fs.StringVar(&c.resumeFrom, "resume-from", "", "etcd: continue after key K at revision R (`key:K,rev:R`)")
	fs.BoolVar(&c.resume, "resume", false, "continue from the checkpoint file")
	fs.BoolVar(&c.verify, "verify-checksum", false, "compare each chunk's SHA-256 with what putallkv reads back; re-sync on a difference")
	fs.StringVar(&c.checkpoint, "checkpoint", "putallctl-migrate.checkpoint", "checkpoint `FILE`, rewritten after each chunk")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) != 0:
		return nil, fmt.Errorf("want no arguments, got %q", pos)
	case c.from == "":
		return nil, errors.New("want --from etcd://HOST:PORT or redis://HOST:PORT")
	case c.resume && c.resumeFrom != "":
		return nil, errors.New("--resume and --resume-from exclude each other")
	}
	if _, _, err := parseFrom(c.from); err != nil {
		return nil, err
	}
	if c.resumeFrom != "" {
		if _, err := parseResumeFrom(c.resumeFrom); err != nil {
			return nil, err
		}
	}
	return c, c.check()
}

// parseFrom splits a --from URL into its scheme (etcd or redis) and addresses.
func parseFrom(from string) (scheme string, addrs []string, err error) {
	scheme, rest, ok := strings.Cut(from, "://")
	if !ok || (scheme != "etcd" && scheme != "redis") {
		return "", nil, fmt.Errorf("--from %q: want etcd://HOST:PORT[,...] or redis://HOST:PORT[,...]", from)
	}
	for a := range strings.SplitSeq(rest, ",") {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", nil, fmt.Errorf("--from %q: %w", from, err)
		}
		addrs = append(addrs, a)
	}
	return scheme, addrs, nil
}

// parseResumeFrom parses --resume-from key:K,rev:R (the key may hold commas; the revision is
// after the last ",rev:").
func parseResumeFrom(s string) (migrateCheckpoint, error) {
	i := strings.LastIndex(s, ",rev:")
	if !strings.HasPrefix(s, "key:") || i < 0 {
		return migrateCheckpoint{}, fmt.Errorf("--resume-from %q: want key:K,rev:R", s)
	}
	rev, err := strconv.ParseInt(s[i+len(",rev:"):], 10, 64)
	if err != nil || rev <= 0 {
		return migrateCheckpoint{}, fmt.Errorf("--resume-from %q: the revision must be a positive integer", s)
	}
	return migrateCheckpoint{Key: s[len("key:"):i], Revision: rev}, nil
}

// maxDriftNamed bounds the changed keys a migration names (it counts them all).
const maxDriftNamed = 20

func (c *migrateCmd) do(ctx context.Context, api kv.KVService, out printer) error {
	cp := migrateCheckpoint{From: c.from, Prefix: c.prefix}
	switch {
	case c.resume:
		var old migrateCheckpoint
		if err := loadCheckpoint(c.checkpoint, &old); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if old.From != c.from || old.Prefix != c.prefix {
			return fmt.Errorf("--resume: checkpoint %s is of a migration from %s, prefix %q", c.checkpoint, old.From, old.Prefix)
		}
		cp = old
	case c.resumeFrom != "":
		at, _ := parseResumeFrom(c.resumeFrom) // checked by parseMigrate
		cp.Key, cp.Revision = at.Key, at.Revision
	}
	scheme, addrs, _ := parseFrom(c.from) // checked by parseMigrate
	var src source
	var err error
	if scheme == "etcd" {
		src, err = openEtcd(ctx, addrs, c.prefix, c.chunkSize, c.callTimeout, cp)
	} else {
		src, err = openRedis(ctx, addrs, c.prefix, c.chunkSize, c.callTimeout, cp)
	}
	if err != nil {
		return err
	}
	defer src.close()
	if cp.Chunks > 0 || cp.Key != "" {
		fmt.Fprintf(out.progress, "putallctl: migrate: resuming after %d keys (key:%s,rev:%d)\n", cp.Keys, cp.Key, cp.Revision)
	}

	var st moveStats
	w := newChunkWriter(api, &st)
	defer w.Close() // every chunk written was acknowledged by then, or its error returned
	prog := newProgress(out.progress, "migrated", 0)
	prog.keys = cp.Keys
	defer prog.finish()
	chunks, stop := prefetch(ctx, src, cp)
	defer stop()
	for f := range chunks {
		if f.err != nil {
			return f.err
		}
		prog.total = src.total() // known once the first chunk is read
		if len(f.items) > 0 {
			st.count(f.items)
		}
		// A Redis chunk (whole SCAN replies) may hold a few more than --chunk-size keys.
		for part := range slices.Chunk(f.items, c.chunkSize) {
			if err := copyChunk(ctx, api, w, part, c.verify, &st); err != nil {
				printFailed(out, err)
				return fmt.Errorf("chunk from %q: %w (resume with --resume)", firstKey(part), err)
			}
		}
		f.pos.Keys, f.pos.Chunks = cp.Keys+int64(len(f.items)), cp.Chunks+1 // empty reads count too: a Redis checkpoint at its end has Chunks > 0
		cp = f.pos
		if err := saveCheckpoint(c.checkpoint, cp); err != nil {
			return err
		}
		prog.add(int64(len(f.items)))
	}
	stop()

	changed, deleted, some, err := src.drift(ctx)
	if err != nil {
		return fmt.Errorf("copied, but the check for keys changed in the source since failed: %w", err)
	}
	st.Changed, st.Deleted, st.Skipped = max(changed, 0), max(deleted, 0), src.skipped()
	st.report(out, "migrated")
	if changed > 0 || deleted > 0 {
		for _, k := range some {
			fmt.Fprintf(out.progress, "putallctl: migrate: changed in the source after it was copied: %s\n", quoteKey(k))
		}
		return fmt.Errorf("%d keys changed and %d deleted in the source since revision %d: putallkv holds them as of that revision "+
			"(run migrate again without --resume to copy what changed; deletions are not copied)", changed, deleted, cp.Revision)
	}
	return nil
}

// fetched is a chunk read from a source, with the source's position after it (in a copy of
// the checkpoint) or the error that ended the reading.
type fetched struct {
	items []item
	pos   migrateCheckpoint
	err   error
}

// prefetch reads src one chunk ahead of the copy, in a goroutine, so that reading the next
// chunk overlaps writing this one; base is the checkpoint the positions are copies of. The
// channel closes after the last chunk or an error; stop ends the reading early and waits for
// the goroutine (stop may be called more than once). Nothing else may call src until stop
// has returned.
func prefetch(ctx context.Context, src source, base migrateCheckpoint) (<-chan fetched, func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan fetched, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			f := fetched{pos: base}
			var more bool
			f.items, more, f.err = src.next(ctx)
			src.position(&f.pos)
			select {
			case ch <- f:
			case <-ctx.Done():
				return
			}
			if f.err != nil || !more {
				return
			}
		}
	}()
	return ch, func() { cancel(); <-done }
}
