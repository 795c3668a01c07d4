package redisstore

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// slotKeys are keys with and without hash tags, including the edge cases Redis documents: an
// empty tag or an unclosed brace hashes the whole key, and only the first tag counts.
func slotKeys() []string {
	keys := []string{"", "a", "foo", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
		"foo{{bar}}zap", "foo{bar}{zap}", "{", "}", "{}", "a{b", "k:{tag}:x", "123456789"}
	for i := range 500 {
		keys = append(keys, fmt.Sprintf("key:%d", i), fmt.Sprintf("{t%d}x", i%37))
	}
	return keys
}

// The hash-tag rules, as the cluster specification states them by example.
func TestSlotTags(t *testing.T) {
	if got := crc16(0, "123456789"); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want CRC-16/XMODEM's check value 0x31c3", got)
	}
	same := [][2]string{
		{"{user1000}.following", "user1000"}, {"{user1000}.followers", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"}, {"foo{{bar}}zap", "{bar"}, {"foo{bar}{zap}", "bar"},
	}
	for _, p := range same {
		if Slot(p[0]) != int(crc16(0, p[1])%Slots) {
			t.Errorf("Slot(%q) does not hash %q", p[0], p[1])
		}
	}
}

// Every slot has a counter key in that very slot, and a data key keeps its user key's tag.
func TestSlotKeys(t *testing.T) {
	for s := range Slots {
		if got := Slot(revisionKey(s)); got != s {
			t.Fatalf("revisionKey(%d) = %q is in slot %d", s, revisionKey(s), got)
		}
	}
	for _, k := range []string{"{user42}:name", "a{b}c", "x}{y}"} {
		if Slot(dataKey(k)) != Slot(k) {
			t.Fatalf("dataKey(%q) left the key's slot", k)
		}
	}
	for _, k := range []string{"", "plain", "{user42}:name", "a{b}c", "x}{y}", "{}", "{}x{y}", "k:"} {
		if dataSlot(k) != Slot(dataKey(k)) {
			t.Errorf("dataSlot(%q) = %d; Slot(dataKey) = %d", k, dataSlot(k), Slot(dataKey(k)))
		}
	}
}

// groupBySlot keeps keys in order within their slot's group and groups in order of their first
// key, below and beyond the number of groups at which it starts indexing them.
func TestGroupBySlot(t *testing.T) {
	for _, n := range []int{1, 15, 16, 17, 200} {
		var keys []string
		for i := range n {
			keys = append(keys, fmt.Sprintf("key-%d", i), fmt.Sprintf("{key-%d}again", i)) // each slot twice
		}
		groups := groupBySlot(len(keys), func(i int) string { return keys[i] })
		var want []group
		for i, k := range keys {
			s := Slot(dataKey(k))
			g := slices.IndexFunc(want, func(g group) bool { return g.slot == s })
			if g < 0 {
				g = len(want)
				want = append(want, group{slot: s})
			}
			want[g].idx = append(want[g].idx, i)
		}
		if !reflect.DeepEqual(groups, want) {
			t.Errorf("%d keys: groups %v; want %v", len(keys), groups, want)
		}
	}
}
