package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/datadriven"
	"github.com/putallkv/putallkv/pkg/wal"
)

// engineKind is one configuration of an engine under test: Memory, or Durable under a sync policy.
type engineKind struct {
	name    string
	durable bool
	sync    wal.SyncPolicy
}

var (
	memoryKind  = engineKind{name: "memory"}
	durableKind = engineKind{name: "durable", durable: true, sync: wal.SyncNone}
)

// subject is an engine under test, with what the scripted and metamorphic tests do to it beyond
// Engine: restart it, snapshot it, sweep it. On a Memory, which keeps nothing beyond the process,
// a restart and a snapshot do nothing: the state a Durable recovers must read the same.
type subject struct {
	t    testing.TB
	kind engineKind
	opts Options
	dir  string // a Durable's data directory
	mem  *Memory
	dur  *Durable
}

// openSubject opens an empty engine of kind with opts; it is closed when the test ends.
func openSubject(t testing.TB, kind engineKind, opts Options) *subject {
	t.Helper()
	s := &subject{t: t, kind: kind, opts: opts}
	if kind.durable {
		s.dir = t.TempDir()
	}
	s.open()
	t.Cleanup(s.close)
	return s
}

func (s *subject) open() {
	s.t.Helper()
	if !s.kind.durable {
		m, err := NewMemory(s.opts)
		if err != nil {
			s.t.Fatal(err)
		}
		s.mem = m
		return
	}
	d, err := OpenDurable(DurableOptions{Options: s.opts, Dir: s.dir,
		WAL: wal.Options{Sync: s.kind.sync, SegmentBytes: 4 << 10}})
	if err != nil {
		s.t.Fatalf("%s: %v", s.kind.name, err)
	}
	s.dur = d
}

// engine returns the engine as the service sees it.
func (s *subject) engine() Engine {
	switch {
	case s.dur != nil:
		return s.dur
	case s.mem != nil:
		return s.mem
	}
	return nil
}

// memory returns the Memory that holds the keys.
func (s *subject) memory() *Memory {
	if s.dur != nil {
		return s.dur.mem
	}
	return s.mem
}

// reopen restarts a Durable: it closes it and recovers it from its data directory.
func (s *subject) reopen() {
	s.t.Helper()
	if s.dur == nil {
		return
	}
	if err := s.dur.Close(); err != nil {
		s.t.Fatalf("%s: close: %v", s.kind.name, err)
	}
	s.dur = nil
	s.open()
}

// snapshot takes a Durable's snapshot.
func (s *subject) snapshot() {
	s.t.Helper()
	if s.dur == nil {
		return
	}
	if err := s.dur.Snapshot(context.Background()); err != nil {
		s.t.Fatalf("%s: snapshot: %v", s.kind.name, err)
	}
}

func (s *subject) close() {
	if e := s.engine(); e != nil {
		if err := e.Close(); err != nil {
			s.t.Errorf("%s: close: %v", s.kind.name, err)
		}
	}
	s.mem, s.dur = nil, nil
}

// describeApply renders what Apply answered, one line for the outcome and one per write.
func describeApply(writes []Write, out Outcome, results []Result, err error) string {
	if err != nil {
		return describeError(err)
	}
	text := out.String()
	for i, r := range results {
		text += fmt.Sprintf("\n%s: %s", writes[i].Key, r)
	}
	return text
}

// describeError renders an error of Apply: the refusals the contract names by their fields.
func describeError(err error) string {
	if q, ok := errors.AsType[*QuotaError](err); ok {
		return fmt.Sprintf("error: over quota: grow=%d used=%d max=%d", q.Grow, q.Used, q.Max)
	}
	if d, ok := errors.AsType[*DuplicateKeyError](err); ok {
		return fmt.Sprintf("error: duplicate key %q", d.Key)
	}
	return "error: " + err.Error()
}

// describeGet renders what GetAll answered: the revision, then one line per key.
func describeGet(keys []string, rev int64, items []Item, err error) string {
	if err != nil {
		return describeError(err)
	}
	text := fmt.Sprintf("rev=%d", rev)
	for i, it := range items {
		text += fmt.Sprintf("\n%s: %s", keys[i], it)
	}
	return text
}

// describeScan runs "scan [PREFIX] [limit=N] [bytes=N] [keys_only]" against e, following every
// page, and renders the items sorted by key (the order is the engine's). It fails the case when
// a page is over its bounds or a key comes twice.
func describeScan(c *datadriven.Case, e Engine) string {
	req := ScanRequest{Limit: 1000, MaxBytes: 1 << 20}
	for _, a := range c.Args {
		k, v, isOption := strings.Cut(a, "=")
		switch {
		case a == "keys_only":
			req.KeysOnly = true
		case !isOption:
			req.Prefix = a
		case k == "limit":
			req.Limit = int(c.Int(v))
		case k == "bytes":
			req.MaxBytes = int(c.Int(v))
		default:
			c.Fatalf("scan: unknown option %q", k)
		}
	}
	seen := make(map[string]bool)
	var lines []string
	err := ScanAll(context.Background(), e, req, func(page ScanPage) error {
		size := 0
		for _, it := range page.Items {
			size += len(it.Key) + len(it.Value)
		}
		if len(page.Items) > req.Limit || len(page.Items) > 1 && size > req.MaxBytes {
			c.Fatalf("a page of %d items and %d bytes, over limit=%d bytes=%d", len(page.Items), size, req.Limit, req.MaxBytes)
		}
		for _, it := range page.Items {
			if seen[it.Key] {
				c.Fatalf("key %q returned twice", it.Key)
			}
			seen[it.Key] = true
			lines = append(lines, fmt.Sprintf("%s: %s", it.Key, Item{Value: it.Value, Version: it.Version, ExpiresAtMs: it.ExpiresAtMs, Found: true}))
		}
		return nil
	})
	if err != nil {
		return describeError(err)
	}
	slices.Sort(lines)
	return strings.Join(append([]string{fmt.Sprintf("keys=%d", len(lines))}, lines...), "\n")
}
