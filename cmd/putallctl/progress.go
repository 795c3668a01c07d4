package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress shows how far a load, an import or a migration has come, on stderr: on a terminal
// one line redrawn in place (a bar when the total is known, keys, keys/s and the ETA); on
// anything else a plain line every few seconds, so that a log keeps a readable trace. It is
// driven by its caller after each chunk (no goroutine of its own), and draws only when the
// last drawing is old enough.
type progress struct {
	w    io.Writer
	tty  bool
	now  func() time.Time
	verb string
	// total is the keys expected, 0 when unknown (no bar, no ETA).
	total int64
	// every is the least time between two drawings.
	every time.Duration

	start, last time.Time
	keys        int64
}

// Drawing intervals: a terminal is redrawn often, a log gets a line now and then.
const (
	ttyEvery   = 200 * time.Millisecond
	plainEvery = 5 * time.Second
	barWidth   = 30
)

// newProgress returns the progress display of a command that verb-s (loaded, imported,
// migrated) total keys (0: unknown) onto w.
func newProgress(w io.Writer, verb string, total int64) *progress {
	tty := isTerminal(w)
	every := plainEvery
	if tty {
		every = ttyEvery
	}
	return newProgressWith(w, tty, time.Now, every, verb, total)
}

// newProgressWith is newProgress with the terminal test, the clock and the interval given.
func newProgressWith(w io.Writer, tty bool, now func() time.Time, every time.Duration, verb string, total int64) *progress {
	t := now()
	return &progress{w: w, tty: tty, now: now, every: every, verb: verb, total: total, start: t, last: t}
}

// add counts n more keys done and draws when it is time to.
func (p *progress) add(n int64) {
	p.keys += n
	if now := p.now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.draw(now, false)
	}
}

// finish draws the final state (on a terminal, ending the line redrawn so far).
func (p *progress) finish() { p.draw(p.now(), true) }

func (p *progress) draw(now time.Time, final bool) {
	line := p.line(now)
	switch {
	case p.tty:
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(p.w, "\r\x1b[K%s%s", line, end)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// line is one drawing: e.g. "migrated 40000/100000 keys (40%)  8000 keys/s  ETA 8s  elapsed 5s",
// with a bar in front on a terminal when the total is known.
func (p *progress) line(now time.Time) string {
	var b strings.Builder
	elapsed := now.Sub(p.start)
	if p.tty && p.total > 0 {
		filled := int(min(p.keys, p.total) * barWidth / p.total)
		fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled))
	}
	if p.total > 0 {
		fmt.Fprintf(&b, "%s %d/%d keys (%d%%)", p.verb, p.keys, p.total, min(p.keys, p.total)*100/p.total)
	} else {
		fmt.Fprintf(&b, "%s %d keys", p.verb, p.keys)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.keys) / elapsed.Seconds()
	}
	fmt.Fprintf(&b, "  %.0f keys/s", rate)
	if p.total > 0 && rate > 0 && p.keys < p.total {
		eta := time.Duration(float64(p.total-p.keys) / rate * float64(time.Second))
		fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
	}
	fmt.Fprintf(&b, "  elapsed %s", elapsed.Round(time.Second))
	return b.String()
}
