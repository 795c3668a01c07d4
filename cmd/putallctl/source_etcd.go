package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdSource reads the keys under a prefix from etcd, all at one revision: the first Get's
// (or the checkpoint's), each later page a Get of the keys after the last one returned,
// WithRev that revision, in key order. A revision etcd compacted meanwhile fails the read
// (the migration then has to start over, which rewrites nothing that is already equal).
type etcdSource struct {
	cli     *clientv3.Client
	timeout time.Duration
	prefix  string
	end     string // the end of the prefix's range
	n       int64
	rev     int64
	after   string // the last key returned; "" before the first page
	count   int64  // keys under the prefix at rev
	done    bool
}

func openEtcd(ctx context.Context, addrs []string, prefix string, n int, timeout time.Duration, cp migrateCheckpoint) (*etcdSource, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: addrs, DialTimeout: timeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", addrs, err)
	}
	s := &etcdSource{cli: cli, timeout: timeout, prefix: prefix, end: clientv3.GetPrefixRangeEnd(prefix), n: int64(n),
		rev: cp.Revision, after: cp.Key, count: cp.Count}
	if s.rev != 0 && s.count == 0 { // --resume-from: how many keys the prefix held at rev
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := cli.Get(cctx, s.start(true), clientv3.WithRange(s.end), clientv3.WithRev(s.rev), clientv3.WithCountOnly())
		if err != nil {
			cli.Close()
			return nil, fmt.Errorf("etcd: reading at revision %d: %w", s.rev, err)
		}
		s.count = resp.Count
	}
	return s, nil
}

// start is the first key of the range: the prefix (a zero byte for every key), or (first
// false) the key after the last one returned.
func (s *etcdSource) start(first bool) string {
	if !first && s.after != "" {
		return s.after + "\x00"
	}
	if s.prefix == "" {
		return "\x00"
	}
	return s.prefix
}

func (s *etcdSource) next(ctx context.Context) ([]item, bool, error) {
	if s.done {
		return nil, false, nil
	}
	opts := []clientv3.OpOption{clientv3.WithRange(s.end), clientv3.WithLimit(s.n),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if s.rev != 0 {
		opts = append(opts, clientv3.WithRev(s.rev))
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.start(false), opts...)
	if err != nil {
		return nil, false, fmt.Errorf("etcd: reading after %q at revision %d: %w", s.after, s.rev, err)
	}
	if s.rev == 0 {
		s.rev, s.count = resp.Header.Revision, resp.Count
	}
	items := make([]item, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		items[i] = item{key: string(kv.Key), value: kv.Value}
	}
	if len(items) > 0 {
		s.after = items[len(items)-1].key
	}
	s.done = !resp.More
	return items, !s.done, nil
}

func (s *etcdSource) position(cp *migrateCheckpoint) {
	cp.Key, cp.Revision, cp.Count = s.after, s.rev, s.count
}

func (s *etcdSource) total() int64 { return s.count }

// skipped is 0: every etcd key is a byte string putallkv can hold.
func (s *etcdSource) skipped() int64 { return 0 }

// drift reads the prefix again, keys only, at the current revision: a key whose mod revision
// is above the read revision was written since (changed, or created if its create revision is
// too); the keys at the read revision, less those still there, were deleted since.
func (s *etcdSource) drift(ctx context.Context) (changed, deleted int64, some []string, err error) {
	if s.rev == 0 {
		return 0, 0, nil, errors.New("etcd: nothing was read")
	}
	var now, created int64
	key := s.start(true)
	for {
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(cctx, key, clientv3.WithRange(s.end), clientv3.WithLimit(s.n), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		cancel()
		if err != nil {
			return 0, 0, nil, err
		}
		for _, kv := range resp.Kvs {
			now++
			if kv.ModRevision <= s.rev {
				continue
			}
			if kv.CreateRevision > s.rev {
				created++
			}
			changed++
			if len(some) < maxDriftNamed {
				some = append(some, string(kv.Key))
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return changed, s.count - (now - created), some, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func (s *etcdSource) close() { s.cli.Close() }
