// Package hotkey finds the keys that take a large share of the writes, as they happen, at a
// cost the write path does not notice: one write in SampleEvery is counted, in a Count-Min
// Sketch (fixed memory, whatever the key space), and a key whose sampled count within one
// window reaches Threshold becomes hot. A hot key stays hot for KeepAlive after it last
// crossed the threshold, so a key that pulses is not reported on and off.
//
// The defaults are the seed design's: every 100th write sampled, 500 samples within a minute
// (about 50 000 writes a minute, 830 a second) make a key hot, and a key leaves after 60 s
// below that.
package hotkey

import (
	"encoding/json"
	"hash/maphash"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets a Detector's sampling, threshold and memory. Zero fields take the defaults.
type Config struct {
	// SampleEvery counts one write in SampleEvery, chosen at random (default 100).
	SampleEvery int
	// Threshold is the sampled count within one Window that makes a key hot (default 500).
	Threshold int
	// Window is the span counts are kept over (default one minute): the sketch of the window
	// before weighs in for the part of it that still overlaps the last Window.
	Window time.Duration
	// KeepAlive is how long a key stays hot after it last reached Threshold (default 60 s).
	KeepAlive time.Duration
	// MaxKeys caps the hot keys kept (default 64): past it, a new hot key replaces the
	// coolest only when its count is higher.
	MaxKeys int
	// MaxKeyBytes caps the bytes of a hot key's name that are kept and reported (default 256).
	MaxKeyBytes int
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
	// Sample reports whether this write is counted (default: with probability 1/SampleEvery
	// from math/rand/v2); tests pass a seeded source so that a run repeats.
	Sample func() bool
}

// Defaults of Config.
const (
	DefaultSampleEvery = 100
	DefaultThreshold   = 500
	DefaultWindow      = time.Minute
	DefaultKeepAlive   = 60 * time.Second
	DefaultMaxKeys     = 64
	DefaultMaxKeyBytes = 256
)

func (c Config) withDefaults() Config {
	if c.SampleEvery <= 0 {
		c.SampleEvery = DefaultSampleEvery
	}
	if c.Threshold <= 0 {
		c.Threshold = DefaultThreshold
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.MaxKeyBytes <= 0 {
		c.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sample == nil {
		n := uint64(c.SampleEvery)
		c.Sample = func() bool { return rand.Uint64N(n) == 0 }
	}
	return c
}

// Key is one hot key as the detector sees it.
type Key struct {
	// Key is the key's name, cut at MaxKeyBytes.
	Key string `json:"key"`
	// Rate is the estimated writes per second over the last window.
	Rate float64 `json:"writes_per_second"`
	// Share is the estimated fraction of all writes over the last window that went to the key.
	Share float64 `json:"share"`
	// Since is when the key last became hot.
	Since time.Time `json:"hot_since"`
}

// Detector counts sampled writes by key. Observe is safe for concurrent use and allocates
// nothing on the unsampled path.
type Detector struct {
	cfg  Config
	seed maphash.Seed

	mu       sync.Mutex
	cur      *sketch           // the current window's counts
	prev     *sketch           // the window before's, or nil
	curStart time.Time         // when cur began
	total    [2]int64          // sampled writes in cur and prev
	hot      map[uint64]*entry // by the key's hash, so that names cut short never collide
	snapshot atomic.Pointer[map[uint64]struct{}]
}

type entry struct {
	name    string    // the key, cut at MaxKeyBytes
	count   int64     // the sketch's estimate when last sampled
	lastHot time.Time // when it last reached the threshold
	since   time.Time // when it became hot
}

// New returns a Detector with cfg's settings.
func New(cfg Config) *Detector {
	cfg = cfg.withDefaults()
	d := &Detector{cfg: cfg, seed: maphash.MakeSeed(), cur: newSketch(), curStart: cfg.Now(), hot: map[uint64]*entry{}}
	d.publish()
	return d
}

// Observe counts one write of key, if it is sampled.
func (d *Detector) Observe(key string) {
	if !d.cfg.Sample() {
		return
	}
	h := maphash.String(d.seed, key)
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	d.rotate(now)
	d.total[0]++
	count := d.cur.add(h) + d.fromPrev(h, now)
	e := d.hot[h]
	if e != nil {
		e.count = count
	}
	if count < int64(d.cfg.Threshold) {
		return
	}
	if e != nil {
		e.lastHot = now
		return
	}
	if len(d.hot) >= d.cfg.MaxKeys && !d.evictCoolest(now, count) {
		return
	}
	if len(key) > d.cfg.MaxKeyBytes {
		key = key[:d.cfg.MaxKeyBytes]
	}
	d.hot[h] = &entry{name: strings.Clone(key), count: count, lastHot: now, since: now}
	d.publish()
}

// IsHot reports whether key is hot now: a hash and one map lookup in an immutable snapshot,
// for the write path.
func (d *Detector) IsHot(key string) bool {
	_, ok := (*d.snapshot.Load())[maphash.String(d.seed, key)]
	return ok
}

// Hot returns the hot keys, hottest first, forgetting those whose keep-alive ran out.
func (d *Detector) Hot() []Key {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	d.rotate(now)
	d.expire(now)
	total := d.total[0] + d.weightPrev(now, d.total[1])
	out := make([]Key, 0, len(d.hot))
	for _, e := range d.hot {
		hk := Key{Key: e.name, Since: e.since, Rate: float64(e.count*int64(d.cfg.SampleEvery)) / d.cfg.Window.Seconds()}
		if total > 0 {
			hk.Share = min(1, float64(e.count)/float64(total))
		}
		out = append(out, hk)
	}
	slices.SortFunc(out, func(a, b Key) int {
		if a.Rate != b.Rate {
			if a.Rate > b.Rate {
				return -1
			}
			return 1
		}
		if a.Key < b.Key {
			return -1
		}
		return 1
	})
	return out
}

// rotate starts a new window when the current one is over; two windows over, nothing of the
// old counts remains.
func (d *Detector) rotate(now time.Time) {
	elapsed := now.Sub(d.curStart)
	if elapsed < d.cfg.Window {
		return
	}
	if elapsed >= 2*d.cfg.Window {
		d.prev, d.total[1] = nil, 0
		d.curStart = now
	} else {
		d.prev, d.total[1] = d.cur, d.total[0]
		d.curStart = d.curStart.Add(d.cfg.Window)
	}
	d.cur, d.total[0] = newSketch(), 0
}

// fromPrev is the part of the previous window's count for h that lies within the last
// Window.
func (d *Detector) fromPrev(h uint64, now time.Time) int64 {
	if d.prev == nil {
		return 0
	}
	return d.weightPrev(now, d.prev.estimate(h))
}

func (d *Detector) weightPrev(now time.Time, n int64) int64 {
	left := 1 - float64(now.Sub(d.curStart))/float64(d.cfg.Window)
	return int64(float64(n) * max(0, left))
}

// expire forgets keys whose keep-alive ran out.
func (d *Detector) expire(now time.Time) {
	changed := false
	for k, e := range d.hot {
		if now.Sub(e.lastHot) >= d.cfg.KeepAlive {
			delete(d.hot, k)
			changed = true
		}
	}
	if changed {
		d.publish()
	}
}

// evictCoolest makes room for a key counted count: it forgets expired keys, then the coolest
// key if it is cooler than count, and reports whether there is room.
func (d *Detector) evictCoolest(now time.Time, count int64) bool {
	d.expire(now)
	if len(d.hot) < d.cfg.MaxKeys {
		return true
	}
	coolest, least, found := uint64(0), count, false
	for h, e := range d.hot {
		if e.count < least {
			coolest, least, found = h, e.count, true
		}
	}
	if found {
		delete(d.hot, coolest)
	}
	return found
}

// publish replaces the snapshot IsHot reads.
func (d *Detector) publish() {
	m := make(map[uint64]struct{}, len(d.hot))
	for h := range d.hot {
		m[h] = struct{}{}
	}
	d.snapshot.Store(&m)
}

// sketch is a Count-Min Sketch of depth rows: each key adds one to a counter in every row and
// its estimate is the least of them, never below its true count and, with width 2048, above it
// by at most e/2048 ≈ 0.13 % of the sampled writes with probability 1-e^-4.
type sketch [depth][width]int32

const (
	depth = 4
	width = 2048
)

func newSketch() *sketch { return new(sketch) }

// cell returns row r's column for hash h: the rows take different 16-bit slices of h mixed
// with the row number, so one 64-bit hash serves every row.
func cell(h uint64, r int) int {
	x := h ^ (uint64(r) * 0x9e3779b97f4a7c15)
	x ^= x >> 29
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 32
	return int(x % width)
}

// add counts h once and returns its new estimate.
func (s *sketch) add(h uint64) int64 {
	least := int64(-1)
	for r := range depth {
		c := &s[r][cell(h, r)]
		if *c < 1<<31-1 {
			*c++
		}
		if least < 0 || int64(*c) < least {
			least = int64(*c)
		}
	}
	return least
}

func (s *sketch) estimate(h uint64) int64 {
	least := int64(-1)
	for r := range depth {
		if c := int64(s[r][cell(h, r)]); least < 0 || c < least {
			least = c
		}
	}
	return least
}

// Report is what the admin endpoint serves: the hot keys now and the settings that made them.
type Report struct {
	Keys        []Key   `json:"hot_keys"`
	SampleEvery int     `json:"sample_every"`
	Threshold   int     `json:"threshold"`
	WindowSec   float64 `json:"window_seconds"`
	KeepAlive   float64 `json:"keep_alive_seconds"`
}

// Report returns the hot keys (see Hot) with the detector's settings.
func (d *Detector) Report() Report {
	return Report{Keys: d.Hot(), SampleEvery: d.cfg.SampleEvery, Threshold: d.cfg.Threshold,
		WindowSec: d.cfg.Window.Seconds(), KeepAlive: d.cfg.KeepAlive.Seconds()}
}

// ServeHTTP serves the Report as JSON (GET /admin/hotkeys on the admin port).
func (d *Detector) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(d.Report())
}
