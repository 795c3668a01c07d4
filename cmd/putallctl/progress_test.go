package main

import (
	"strings"
	"testing"
	"time"
)

// TestProgressPlainLines drives the display off a terminal with a fake clock: a line only once
// the interval has passed since the last, with keys/s and the ETA from the total, and a final
// line at the end.
func TestProgressPlainLines(t *testing.T) {
	var b strings.Builder
	now := time.Unix(1000, 0)
	p := newProgressWith(&b, false, func() time.Time { return now }, 5*time.Second, "migrated", 10000)
	for range 10 {
		now = now.Add(time.Second)
		p.add(1000)
	}
	p.finish()
	want := "migrated 5000/10000 keys (50%)  1000 keys/s  ETA 5s  elapsed 5s\n" +
		"migrated 10000/10000 keys (100%)  1000 keys/s  elapsed 10s\n" +
		"migrated 10000/10000 keys (100%)  1000 keys/s  elapsed 10s\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	b.Reset()
	p = newProgressWith(&b, false, func() time.Time { return now }, time.Second, "loaded", 0)
	now = now.Add(2 * time.Second)
	p.add(300)
	if got := b.String(); got != "loaded 300 keys  150 keys/s  elapsed 2s\n" {
		t.Errorf("unknown total: %q", got)
	}
}

// TestProgressTerminal redraws one line in place, with a bar, and ends it at the finish.
func TestProgressTerminal(t *testing.T) {
	var b strings.Builder
	now := time.Unix(1000, 0)
	p := newProgressWith(&b, true, func() time.Time { return now }, time.Second, "imported", 300)
	now = now.Add(time.Second)
	p.add(100)
	now = now.Add(time.Second)
	p.add(200)
	p.finish()
	want := "\r\x1b[K[##########....................] imported 100/300 keys (33%)  100 keys/s  ETA 2s  elapsed 1s" +
		"\r\x1b[K[##############################] imported 300/300 keys (100%)  150 keys/s  elapsed 2s" +
		"\r\x1b[K[##############################] imported 300/300 keys (100%)  150 keys/s  elapsed 2s\n"
	if got := b.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
