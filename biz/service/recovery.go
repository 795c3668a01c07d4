package service

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// Idempotency survives a restart through the store's journal: every write that carries a
// request_id is tagged with its idempotency key (tag), recovery hands the tagged batches back
// with their results, and Recovery rebuilds the responses. Snapshots, which make the journal
// before them redundant, save the remembered responses whole (SnapshotTags).
//
// Tag: version byte, method, request_id, digest (32 bytes), created (Unix ms, varint), offset
// and total (uvarint: the batch is entries [offset, offset+n) of a call of total entries; a
// BEST_EFFORT call split by admission is several batches). A saved record is a tag followed
// by the response in Thrift binary.
const tagVersion = 1

// tag encodes k for the batch of a call's entries starting at offset; nil k, nil tag.
func (k *idemKey) tag(offset, total int) []byte {
	if k == nil {
		return nil
	}
	b := []byte{tagVersion}
	b = appendString(b, k.method)
	b = appendString(b, k.id)
	b = append(b, k.digest[:]...)
	b = binary.AppendVarint(b, k.createdMs)
	b = binary.AppendUvarint(b, uint64(offset))
	return binary.AppendUvarint(b, uint64(total))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errBadTag = errors.New("service: malformed idempotency tag")

// parseTag decodes a tag and returns what follows it.
func parseTag(b []byte) (k idemKey, offset, total int, rest []byte, err error) {
	if len(b) == 0 || b[0] != tagVersion {
		return k, 0, 0, nil, errBadTag
	}
	b = b[1:]
	str := func() string {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			err = errBadTag
			return ""
		}
		s := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return s
	}
	num := func(signed bool) int64 {
		var v int64
		var w int
		if signed {
			v, w = binary.Varint(b)
		} else {
			var u uint64
			u, w = binary.Uvarint(b)
			v = int64(u)
		}
		if w <= 0 {
			err = errBadTag
			return 0
		}
		b = b[w:]
		return v
	}
	k.method, k.id = str(), str()
	if err != nil || len(b) < len(k.digest) {
		return k, 0, 0, nil, errBadTag
	}
	b = b[copy(k.digest[:], b):]
	k.createdMs = num(true)
	offset, total = int(num(false)), int(num(false))
	if err != nil || offset < 0 || total < 1 || offset >= total {
		return k, 0, 0, nil, errBadTag
	}
	return k, offset, total, b, nil
}

// Recovery gathers, while the store recovers, the tagged batches and saved records it hands
// back, and rebuilds the remembered responses from them for New (Options.Recovery).
type Recovery struct {
	calls map[string]*recoveredCall // by request_id
	order []string                  // first seen first
}

type recoveredCall struct {
	key     idemKey
	resp    any // set by a saved record, or built from the batches
	results []store.Result
	covered int // entries the batches hold
	end     int // one past the last entry they hold
	rev     int64
}

// NewRecovery returns an empty Recovery.
func NewRecovery() *Recovery { return &Recovery{calls: map[string]*recoveredCall{}} }

// Add is the store's DurableOptions.Recovered: a tagged batch (rev > 0) or a saved record.
// The keys are not needed: a replay takes them from the retry.
func (r *Recovery) Add(tag []byte, rev int64, _ []string, results []store.Result) {
	k, offset, total, rest, err := parseTag(tag)
	if err != nil || (rev > 0 && offset+len(results) > total) {
		return // not ours to understand: the request_id is forgotten
	}
	c := r.calls[k.id]
	if c == nil || c.key != k {
		c = &recoveredCall{key: k}
		r.calls[k.id] = c
		r.order = append(r.order, k.id)
	}
	if rev == 0 {
		c.resp, _ = decodeResponse(k.method, rest) // an undecodable record is forgotten
		return
	}
	if c.results == nil {
		c.results = make([]store.Result, total)
	}
	copy(c.results[offset:], results)
	c.covered += len(results)
	c.end = max(c.end, offset+len(results))
	c.rev = max(c.rev, rev)
}

// response rebuilds the call's response, without keys. A BEST_EFFORT call that admission
// split into chunks may be in the journal in part: it stopped at a chunk that admission or the
// quota did not take (or a crash cut it there), and a chunk that applied nothing wrote no
// batch. When the journal holds the call's entries from the first on, the rest were not
// applied: they answer RESOURCE_EXHAUSTED with no version, as the entries a call did not reach
// do, so that a retry is replayed rather than applying the chunks held a second time. (The
// retry_after_ms the call sent is not in the journal, nor the codes of a last chunk that
// applied nothing: a resend of the rest finds those again.) When it lacks entries before ones
// it holds (a chunk that applied nothing, or chunks a snapshot took while the call ran), what
// they answered is unknown: nil, and the request_id is forgotten.
func (c *recoveredCall) response() any {
	if c.resp != nil || c.covered != c.end {
		return c.resp
	}
	switch c.key.method {
	case "Put":
		return &kv.PutResponse{Version: c.rev, Created: c.results[0].Created}
	case "Delete":
		return &kv.DeleteResponse{Revision: c.rev}
	}
	statuses := make([]*kv.KeyStatus, len(c.results))
	applied := int32(0)
	for i, res := range c.results {
		if i >= c.end {
			statuses[i] = &kv.KeyStatus{Code: kv.ErrorCode_RESOURCE_EXHAUSTED}
			continue
		}
		statuses[i] = &kv.KeyStatus{Code: storeCode(res.Code), Version: res.Version}
		if res.Code == store.OK {
			applied++
		}
	}
	results := resultsToSend(statuses, c.rev)
	switch c.key.method {
	case "PutAll":
		return &kv.PutAllResponse{Results: results, Revision: c.rev, Applied: applied}
	case "DeleteAll":
		return &kv.DeleteAllResponse{Results: results, Revision: c.rev, Applied: applied}
	}
	return nil
}

// restore puts the recovered responses still within the window into m, oldest first;
// partial calls, expired ones and malformed tags are dropped.
func (r *Recovery) restore(m *idempotency) {
	if r == nil {
		return
	}
	for _, id := range r.order {
		c := r.calls[id]
		if out, ok := outcomeOf(c.response(), nil, 0, nil); ok {
			m.restore(c.key, out)
		}
	}
}

// SnapshotTags is the store's DurableOptions.SnapshotTags: every remembered response, saved
// whole but for its keys, which a replay takes from the retry. (A precondition failure wrote
// nothing to the journal either, and is not saved.)
func (s *Service) SnapshotTags() [][]byte {
	s.idem.mu.Lock()
	defer s.idem.mu.Unlock()
	var out [][]byte
	noKey := func(int) string { return "" }
	for e := s.idem.byAge.Front(); e != nil; e = e.Next() {
		rec := e.Value.(*idemRecord)
		select {
		case <-rec.done:
		default:
			continue // in flight: its batch is in the journal after the snapshot's cut
		}
		if !rec.kept || rec.out.code != kv.ErrorCode_OK {
			continue
		}
		if b, ok := encodeResponse(rec.key.tag(0, 1), rec.out.response(rec.key.method, noKey)); ok {
			out = append(out, b)
		}
	}
	return out
}

// thriftMessage is what the generated response types can do to (de)serialise themselves.
type thriftMessage interface {
	BLength() int
	FastWriteNocopy(buf []byte, w thrift.NocopyWriter) int
	FastRead(buf []byte) (int, error)
}

func encodeResponse(tag []byte, resp any) ([]byte, bool) {
	m, ok := resp.(thriftMessage)
	if !ok {
		return nil, false
	}
	b := make([]byte, len(tag)+m.BLength())
	copy(b, tag)
	m.FastWriteNocopy(b[len(tag):], nil)
	return b, true
}

func decodeResponse(method string, b []byte) (any, error) {
	var m thriftMessage
	switch method {
	case "Put":
		m = &kv.PutResponse{}
	case "Delete":
		m = &kv.DeleteResponse{}
	case "PutAll":
		m = &kv.PutAllResponse{}
	case "DeleteAll":
		m = &kv.DeleteAllResponse{}
	default:
		return nil, fmt.Errorf("%w: method %q", errBadTag, method)
	}
	if _, err := m.FastRead(b); err != nil {
		return nil, err
	}
	return m, nil
}
