package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// moveStats are the figures load, import and migrate report at their end.
type moveStats struct {
	// Keys and Bytes count what was read from the source (keys plus values), Chunks its chunks.
	Keys   int64 `json:"keys"`
	Bytes  int64 `json:"bytes"`
	Chunks int64 `json:"chunks"`
	// Written counts the keys written; Unchanged those already stored with the same value.
	Written   int64 `json:"written"`
	Unchanged int64 `json:"unchanged"`
	// Retries counts the writes sent again after admission refused them.
	Retries int64 `json:"retries"`
	// Mismatches counts the chunks whose checksum, read back, differed from the source's (each
	// was re-synced).
	Mismatches int64 `json:"mismatches"`
	// Failed counts the keys refused for good; Skipped those left out (expired, or not a
	// string in Redis).
	Failed  int64 `json:"failed"`
	Skipped int64 `json:"skipped"`
	// Changed counts the keys changed in the source after its read revision (migrate from
	// etcd), Deleted those deleted since.
	Changed int64 `json:"changed_in_source,omitempty"`
	Deleted int64 `json:"deleted_in_source,omitempty"`
	// Revision is putallkv's revision after the last write made (0: none).
	Revision int64 `json:"revision"`
}

// report prints the final figures on one line (JSON with --json).
func (st *moveStats) report(out printer, verb string) {
	if out.json {
		b, _ := json.Marshal(st) // plain fields only
		fmt.Fprintf(out.w, "%s\n", b)
		return
	}
	fmt.Fprintf(out.w, "%s  keys=%d  bytes=%d  chunks=%d  written=%d  unchanged=%d  retries=%d  mismatches=%d  failed=%d  skipped=%d",
		verb, st.Keys, st.Bytes, st.Chunks, st.Written, st.Unchanged, st.Retries, st.Mismatches, st.Failed, st.Skipped)
	if st.Changed > 0 || st.Deleted > 0 {
		fmt.Fprintf(out.w, "  changed_in_source=%d  deleted_in_source=%d", st.Changed, st.Deleted)
	}
	fmt.Fprintf(out.w, "  revision=%d\n", st.Revision)
}

// item is one key as a source holds it: its value and, for a key that expires, the
// milliseconds it has left (0: none).
type item struct {
	key   string
	value []byte
	ttlMs int64
}

// count adds a chunk read from the source to st.
func (st *moveStats) count(items []item) {
	st.Chunks++
	st.Keys += int64(len(items))
	for _, it := range items {
		st.Bytes += int64(len(it.key) + len(it.value))
	}
}

// maxSyncAttempts bounds the rounds of compare-and-write of one chunk: another round follows
// only when a precondition failed because the key was written between the read and the write.
const maxSyncAttempts = 3

// syncChunk makes putallkv hold items (keys written by nothing else meanwhile): it reads the
// keys (GetAll), leaves those already holding the same value (and an expiry exactly when the
// item has one), and writes the others through w, each on the precondition that the key is
// still as read (expected_version its version, 0 for an absent key). So applying a chunk a
// second time (after a crash, a resumed run, an import of the same file) writes nothing, and
// a write racing another writer fails its precondition instead of overwriting: syncChunk
// then compares again, at most maxSyncAttempts times.
func syncChunk(ctx context.Context, api kv.KVService, w chunkWriter, items []item, st *moveStats) error {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	for attempt := 1; ; attempt++ {
		resp, err := api.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
		if err != nil {
			return err
		}
		if len(resp.Items) != len(items) {
			return fmt.Errorf("GetAll answered %d items for %d keys", len(resp.Items), len(items))
		}
		var diff []*kv.Entry
		for i, it := range items {
			stored := resp.Items[i]
			if stored.Found && bytes.Equal(stored.Value, it.value) && (stored.ExpiresAtMs != 0) == (it.ttlMs > 0) {
				continue
			}
			e := &kv.Entry{Key: it.key, Value: it.value, ExpectedVersion: new(int64)}
			if stored.Found {
				*e.ExpectedVersion = stored.Version
			}
			if it.ttlMs > 0 {
				e.TtlMs = &it.ttlMs
			}
			diff = append(diff, e)
		}
		if attempt == 1 {
			st.Unchanged += int64(len(items) - len(diff))
		}
		if len(diff) == 0 {
			return nil
		}
		rev, err := w.WriteChunk(ctx, diff)
		st.Revision = max(st.Revision, rev)
		var ce *chunkError
		switch {
		case err == nil:
			st.Written += int64(len(diff))
			return nil
		case !errors.As(err, &ce):
			return err
		}
		st.Written += int64(len(diff) - len(ce.Failed))
		raced := !slices.ContainsFunc(ce.Failed, func(s *kv.KeyStatus) bool {
			return s.Code != kv.ErrorCode_VERSION_MISMATCH && s.Code != kv.ErrorCode_ALREADY_EXISTS
		})
		if !raced || attempt == maxSyncAttempts {
			st.Failed += int64(len(ce.Failed))
			return err
		}
	}
}

// chunkSum is the SHA-256 of a chunk's keys and values, in key order, each key and value
// preceded by its length (uvarint): the same for the source's items and for what putallkv
// reads back of them exactly when every key is there with the same value.
func chunkSum(pairs [][2][]byte) string {
	slices.SortFunc(pairs, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range pairs {
		for _, b := range p {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sourceSum is chunkSum of items as the source returned them.
func sourceSum(items []item) string {
	pairs := make([][2][]byte, len(items))
	for i, it := range items {
		pairs[i] = [2][]byte{[]byte(it.key), it.value}
	}
	return chunkSum(pairs)
}

// storedSum is chunkSum of what putallkv holds of items' keys now (an absent key is left out,
// so it makes the sums differ).
func storedSum(ctx context.Context, api kv.KVService, items []item) (string, error) {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	resp, err := api.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	if err != nil {
		return "", err
	}
	var pairs [][2][]byte
	for _, it := range resp.Items {
		if it.Found {
			pairs = append(pairs, [2][]byte{[]byte(it.Key), it.Value})
		}
	}
	return chunkSum(pairs), nil
}

// copyChunk syncs items into putallkv (syncChunk; a key given more than once, as a Redis SCAN
// may return it, counts with its last value) and, with verify, then compares the SHA-256
// of what the source returned with that of what putallkv reads back; a chunk whose sums
// differ counts as a mismatch and is synced again, at most maxSyncAttempts times.
func copyChunk(ctx context.Context, api kv.KVService, w chunkWriter, items []item, verify bool, st *moveStats) error {
	items = lastOfEach(items)
	want := ""
	if verify {
		want = sourceSum(items)
	}
	for attempt := 1; ; attempt++ {
		if err := syncChunk(ctx, api, w, items, st); err != nil {
			return err
		}
		if !verify {
			return nil
		}
		got, err := storedSum(ctx, api, items)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		st.Mismatches++
		if attempt == maxSyncAttempts {
			return fmt.Errorf("chunk from %q: putallkv still reads back sha256 %s where the source gave %s after %d syncs",
				firstKey(items), got, want, attempt)
		}
	}
}

// firstKey names a chunk by its first key.
func firstKey(items []item) string {
	if len(items) == 0 {
		return ""
	}
	return items[0].key
}

// lastOfEach returns items with each key once, at its last value, in order of first
// appearance (a batch naming a key twice would be refused whole); items itself when no key
// repeats.
func lastOfEach(items []item) []item {
	at := make(map[string]int, len(items))
	var out []item
	for i, it := range items {
		j, seen := at[it.key]
		switch {
		case !seen && out == nil:
			at[it.key] = i
		case !seen:
			at[it.key] = len(out)
			out = append(out, it)
		default:
			if out == nil {
				out = slices.Clone(items[:i])
			}
			out[j] = it
		}
	}
	if out == nil {
		return items
	}
	return out
}
