package redisstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/rueidis"

	"github.com/putallkv/putallkv/pkg/store"
)

// A scan on this engine walks the hash slots in order and, in each slot, the keys in bytewise
// order: each page asks the slots' masters how many keys each slot holds (CLUSTER
// COUNTKEYSINSLOT, scanSlotWindow slots a round trip), lists the keys of the slots that hold any
// (CLUSTER GETKEYSINSLOT), keeps those with the prefix after the cursor, sorts them, and reads
// them with one MGET, one slot's keys at a time, as of that slot's revision. A key's
// place depends on the key alone, so every key present for the whole scan is returned exactly
// once; a key the MGET finds gone (deleted or expired since it was listed) is left out. A
// prefix that holds a whole hash tag ("{user42}:") pins every key it selects to one slot, and
// the scan reads that slot alone.
//
// While a slot migrates between masters (resharding), a key already moved may be missed: Redis
// lists a slot's keys only on the master holding them.
//
// The cursor is: version byte (1), slot (2 bytes, big-endian), a kind byte (0: every key of the
// slot; 1: the keys after key), then the key.
const (
	scanCursorVersion = 1
	scanCursorHeader  = 4
	scanFromSlot      = 0
	scanAfterKey      = 1
	// scanSlotWindow is how many slots one round trip counts the keys of.
	scanSlotWindow = 256
	// scanListBudget bounds the keys one page lists: past it, once a slot is done, the page ends
	// (maybe short, or empty) with a cursor at the next slot.
	scanListBudget = 1 << 18
	// maxScanSlotKeys bounds the keys of one slot a page lists: a slot holding more (a hash tag
	// with millions of keys) cannot be scanned by this engine, and the scan fails saying so.
	maxScanSlotKeys = 1 << 20
)

type scanPosition struct {
	slot  int
	key   string
	after bool
}

func encodeScanCursor(slot int, key string, kind byte) []byte {
	c := make([]byte, scanCursorHeader, scanCursorHeader+len(key))
	c[0] = scanCursorVersion
	binary.BigEndian.PutUint16(c[1:], uint16(slot))
	c[3] = kind
	return append(c, key...)
}

func decodeScanCursor(c []byte) (scanPosition, error) {
	if c == nil {
		return scanPosition{}, nil
	}
	if len(c) < scanCursorHeader || c[0] != scanCursorVersion || c[3] > scanAfterKey ||
		int(binary.BigEndian.Uint16(c[1:])) >= Slots || c[3] == scanFromSlot && len(c) > scanCursorHeader {
		return scanPosition{}, fmt.Errorf("%w: not a cursor of the redis_cluster engine", store.ErrBadCursor)
	}
	return scanPosition{slot: int(binary.BigEndian.Uint16(c[1:])), key: string(c[scanCursorHeader:]), after: c[3] == scanAfterKey}, nil
}

// prefixSlot returns the slot of every key starting with prefix, when prefix holds a whole,
// non-empty hash tag.
func prefixSlot(prefix string) (int, bool) {
	i := strings.IndexByte(prefix, '{')
	if i < 0 {
		return 0, false
	}
	if j := strings.IndexByte(prefix[i+1:], '}'); j > 0 {
		return Slot(prefix), true
	}
	return 0, false
}

// Scan implements store.Engine (see above for how).
func (e *Engine) Scan(ctx context.Context, req store.ScanRequest) (store.ScanPage, error) {
	if err := store.CheckScan(req); err != nil {
		return store.ScanPage{}, err
	}
	pos, err := decodeScanCursor(req.Cursor)
	if err != nil {
		return store.ScanPage{}, err
	}
	first, last := 0, Slots-1
	if s, ok := prefixSlot(req.Prefix); ok {
		first, last = s, s
	}
	if pos.slot < first {
		pos = scanPosition{slot: first}
	}
	var page store.ScanPage
	size, listed, slotsRead := 0, 0, 0
	for from := pos.slot; from <= last; from += scanSlotWindow {
		to := min(from+scanSlotWindow, last+1)
		counts, err := e.countSlotKeys(ctx, from, to)
		if err != nil {
			return store.ScanPage{}, err
		}
		for slot := from; slot < to; slot++ {
			n := counts[slot-from]
			if n == 0 {
				continue
			}
			if len(page.Items) == req.Limit {
				page.Next = encodeScanCursor(slot, "", scanFromSlot)
				return e.finishScan(page, slotsRead), nil
			}
			keys, err := e.slotKeys(ctx, slot, n, req.Prefix)
			if err != nil {
				return store.ScanPage{}, err
			}
			listed += int(n)
			if slot == pos.slot && pos.after {
				keys = keys[sortedAfter(keys, pos.key):]
			}
			if len(keys) > 0 {
				take := keys[:min(len(keys), req.Limit-len(page.Items))]
				items, rev, err := e.readSlot(ctx, slot, take)
				if err != nil {
					return store.ScanPage{}, err
				}
				slotsRead++
				page.Revision = rev
				for j, k := range take {
					it := items[j]
					if !it.Found {
						continue
					}
					if req.KeysOnly {
						it.Value = nil
					}
					m := len(k) + len(it.Value)
					if len(page.Items) > 0 && size+m > req.MaxBytes {
						page.Next = resumeAt(slot, take, j, pos)
						return e.finishScan(page, slotsRead), nil
					}
					size += m
					page.Items = append(page.Items, store.ScanItem{Key: k, Value: it.Value, Version: it.Version, ExpiresAtMs: it.ExpiresAtMs})
				}
				if len(take) < len(keys) {
					page.Next = encodeScanCursor(slot, take[len(take)-1], scanAfterKey)
					return e.finishScan(page, slotsRead), nil
				}
			}
			if listed >= scanListBudget && slot < last {
				page.Next = encodeScanCursor(slot+1, "", scanFromSlot)
				return e.finishScan(page, slotsRead), nil
			}
		}
	}
	return e.finishScan(page, slotsRead), nil
}

// resumeAt is the cursor before take[j], the first key of slot's sorted keys a page leaves out.
func resumeAt(slot int, take []string, j int, pos scanPosition) []byte {
	switch {
	case j > 0:
		return encodeScanCursor(slot, take[j-1], scanAfterKey)
	case slot == pos.slot && pos.after:
		return encodeScanCursor(slot, pos.key, scanAfterKey)
	}
	return encodeScanCursor(slot, "", scanFromSlot)
}

// sortedAfter returns the index of the first of the sorted keys after key.
func sortedAfter(keys []string, key string) int {
	i, found := slices.BinarySearch(keys, key)
	if found {
		i++
	}
	return i
}

// finishScan sets the page's revision: the slot's when the page read one slot, else 0.
func (e *Engine) finishScan(page store.ScanPage, slotsRead int) store.ScanPage {
	if slotsRead != 1 {
		page.Revision = 0
	}
	return page
}

// countSlotKeys returns how many keys (the engine's counters included) each slot of [from, to)
// holds, asking each slot's master.
func (e *Engine) countSlotKeys(ctx context.Context, from, to int) ([]int64, error) {
	cmds := make(rueidis.Commands, 0, to-from)
	for s := from; s < to; s++ {
		cmds = append(cmds, e.client.B().ClusterCountkeysinslot().Slot(int64(s)).Build().SetSlot(revisionKey(s)))
	}
	counts := make([]int64, to-from)
	for i, r := range e.client.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, fmt.Errorf("redisstore: scan: counting the keys of slot %d: %w", from+i, refusal(err))
		}
		counts[i] = n
	}
	return counts, nil
}

// slotKeys lists the n keys of slot and returns those of the caller's that start with prefix,
// sorted.
func (e *Engine) slotKeys(ctx context.Context, slot int, n int64, prefix string) ([]string, error) {
	if n > maxScanSlotKeys {
		return nil, fmt.Errorf("redisstore: scan: slot %d holds %d keys, more than the %d a scan lists at once", slot, n, maxScanSlotKeys)
	}
	raw, err := e.client.Do(ctx, e.client.B().ClusterGetkeysinslot().Slot(int64(slot)).Count(n).Build().SetSlot(revisionKey(slot))).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: scan: listing the keys of slot %d: %w", slot, refusal(err))
	}
	keys := raw[:0]
	for _, k := range raw {
		if strings.HasPrefix(k, dataPrefix) && strings.HasPrefix(k[len(dataPrefix):], prefix) {
			keys = append(keys, k[len(dataPrefix):])
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// readSlot reads keys, all of slot, with one MGET: as of the slot's revision, which it returns.
func (e *Engine) readSlot(ctx context.Context, slot int, keys []string) ([]store.Item, int64, error) {
	g := group{slot: slot, idx: make([]int, len(keys))}
	for i := range g.idx {
		g.idx[i] = i
	}
	raw, err := e.read(ctx, []group{g}, func(i int) string { return keys[i] })
	if err != nil {
		return nil, 0, fmt.Errorf("redisstore: scan: %w", err)
	}
	items := make([]store.Item, len(keys))
	rev, err := fillItems(raw[0], g, items)
	if err != nil {
		return nil, 0, err
	}
	e.seen(rev)
	return items, rev, nil
}
