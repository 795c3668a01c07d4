package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// redisSource reads the string keys under a prefix from a Redis server, or from every master
// of a Redis Cluster, with SCAN (MATCH prefix*): the masters one after the other in address
// order, each from cursor 0 until SCAN says 0 again, then GET and PTTL for the keys found.
// Redis has no revisions: SCAN returns every key present for the whole scan at least once (a
// key may come twice, which syncChunk makes harmless); a key written meanwhile may be copied
// before or after the write. Keys of other types than string are skipped and counted.
type redisSource struct {
	cli     rueidis.Client
	timeout time.Duration
	match   string
	n       int64
	masters []string
	nodes   map[string]rueidis.Client
	node    int    // index in masters of the one being scanned
	cursor  uint64 // its SCAN cursor (0: not started)
	skips   int64  // keys not strings
}

func openRedis(ctx context.Context, addrs []string, prefix string, n int, timeout time.Duration, cp migrateCheckpoint) (*redisSource, error) {
	if cp.Revision != 0 {
		return nil, errors.New("--resume-from names an etcd revision; Redis has none (use --resume)")
	}
	cli, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true, Dialer: net.Dialer{Timeout: timeout},
		ConnWriteTimeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("redis %v: %w", addrs, err)
	}
	s := &redisSource{cli: cli, timeout: timeout, match: globEscape(prefix) + "*", n: int64(n), nodes: cli.Nodes()}
	for addr, c := range s.nodes {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		role, err := c.Do(cctx, c.B().Role().Build()).ToArray()
		cancel()
		if err != nil || len(role) == 0 {
			cli.Close()
			return nil, fmt.Errorf("redis %s: ROLE: %v", addr, err)
		}
		if r, _ := role[0].ToString(); r == "master" {
			s.masters = append(s.masters, addr)
		}
	}
	if len(s.masters) == 0 {
		cli.Close()
		return nil, fmt.Errorf("redis %v: no master among the nodes", addrs)
	}
	slices.Sort(s.masters)
	if cp.Node != "" {
		if s.node = slices.Index(s.masters, cp.Node); s.node < 0 {
			cli.Close()
			return nil, fmt.Errorf("--resume: the checkpoint's node %s is not a master now (masters: %v); start over without --resume", cp.Node, s.masters)
		}
		s.cursor = cp.Cursor
	} else if cp.Chunks > 0 {
		s.node = len(s.masters) // every master was scanned to its end
	}
	return s, nil
}

// globEscape escapes the characters SCAN's MATCH pattern gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// next scans the current master until it has n keys or the master is done (a chunk never
// spans two masters, so that the checkpoint is one master's cursor), then reads their values.
func (s *redisSource) next(ctx context.Context) ([]item, bool, error) {
	if s.node >= len(s.masters) {
		return nil, false, nil
	}
	addr := s.masters[s.node]
	c := s.nodes[addr]
	var keys []string
	for int64(len(keys)) < s.n {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		e, err := c.Do(cctx, c.B().Scan().Cursor(s.cursor).Match(s.match).Count(s.n).Build()).AsScanEntry()
		cancel()
		if err != nil {
			return nil, false, fmt.Errorf("redis %s: SCAN %d: %w", addr, s.cursor, err)
		}
		keys = append(keys, e.Elements...)
		if s.cursor = e.Cursor; s.cursor == 0 {
			s.node++
			break
		}
	}
	items, err := s.values(ctx, c, keys)
	if err != nil {
		return nil, false, fmt.Errorf("redis %s: %w", addr, err)
	}
	return items, s.node < len(s.masters), nil
}

// values reads keys' values and TTLs in one round trip; a key gone since SCAN is left out, a
// key that is not a string is skipped and counted.
func (s *redisSource) values(ctx context.Context, c rueidis.Client, keys []string) ([]item, error) {
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for _, k := range keys {
		cmds = append(cmds, c.B().Get().Key(k).Build(), c.B().Pttl().Key(k).Build())
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resps := c.DoMulti(cctx, cmds...)
	items := make([]item, 0, len(keys))
	for i, k := range keys {
		v, err := resps[2*i].AsBytes()
		switch {
		case rueidis.IsRedisNil(err):
			continue
		case err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE"):
			s.skips++
			continue
		case err != nil:
			return nil, fmt.Errorf("GET %q: %w", k, err)
		}
		ttl, err := resps[2*i+1].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("PTTL %q: %w", k, err)
		}
		items = append(items, item{key: k, value: v, ttlMs: max(ttl, 0)})
	}
	return items, nil
}

func (s *redisSource) position(cp *migrateCheckpoint) {
	cp.Node, cp.Cursor = "", 0
	if s.node < len(s.masters) {
		cp.Node, cp.Cursor = s.masters[s.node], s.cursor
	}
}

func (s *redisSource) total() int64 { return 0 }

func (s *redisSource) skipped() int64 { return s.skips }

// drift is unknown for Redis, which keeps no revisions.
func (s *redisSource) drift(context.Context) (int64, int64, []string, error) { return -1, -1, nil, nil }

func (s *redisSource) close() { s.cli.Close() }
