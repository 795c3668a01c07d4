package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/putallkv/putallkv/pkg/kvclient"
)

// batcherTarget is single-key Puts through the SDK's Batcher, which coalesces them into
// BEST_EFFORT PutAlls sized by the server's admission. With a trace file it records every
// batch the Batcher sends and, from the server's /metrics, its tokens in hand.
type batcherTarget struct {
	c     *kvclient.Client
	b     *kvclient.Batcher
	trace *tracer
}

func newBatcherTarget(cfg *config) (*batcherTarget, error) {
	c, err := kvclient.New(cfg.addrs(), kvclient.WithRPCTimeout(cfg.timeout), kvclient.WithPool(64, 64, time.Minute))
	if err != nil {
		return nil, err
	}
	t := &batcherTarget{c: c}
	var opts []kvclient.BatcherOption
	if cfg.linger >= 0 {
		opts = append(opts, kvclient.WithLinger(cfg.linger))
	}
	if cfg.inFlight > 0 {
		opts = append(opts, kvclient.WithMaxInFlight(cfg.inFlight))
	}
	if cfg.tracePath != "" {
		if t.trace, err = newTracer(cfg.tracePath, cfg.metricsURL); err != nil {
			_ = c.Close()
			return nil, err
		}
		opts = append(opts, kvclient.WithBatchObserver(t.trace.batch))
	}
	t.b = c.NewBatcher(opts...)
	return t, nil
}

func (t *batcherTarget) write(ctx context.Context, keys []string, value []byte) error {
	_, err := t.b.Put(ctx, keys[0], value)
	return err
}

func (t *batcherTarget) read(ctx context.Context, keys []string) error {
	return (&rpcTarget{c: t.c}).read(ctx, keys)
}

func (t *batcherTarget) code(err error) string { return putallkvCode(err) }

func (t *batcherTarget) close() error {
	err := t.b.Close()
	if t.trace != nil {
		err = t.trace.close()
	}
	_ = t.c.Close()
	return err
}

// tracer writes a CSV time series: one "batch" row per PutAll the Batcher sent, one "tokens"
// row per scrape of the server's putallkv_limiter_tokens gauge.
type tracer struct {
	began time.Time
	mu    sync.Mutex
	w     *bufio.Writer
	f     *os.File

	stop    chan struct{}
	stopped chan struct{}
}

const traceHeader = "t_ms,kind,size,limit,suggested,target,refused,fallback,tokens"

func newTracer(path, metricsURL string) (*tracer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	t := &tracer{began: time.Now(), f: f, w: bufio.NewWriter(f), stop: make(chan struct{}), stopped: make(chan struct{})}
	fmt.Fprintln(t.w, traceHeader)
	go t.scrape(metricsURL)
	return t, nil
}

func (t *tracer) row(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%.3f,", float64(time.Since(t.began).Microseconds())/1000)
	fmt.Fprintf(t.w, format+"\n", args...)
}

func (t *tracer) batch(e kvclient.BatchEvent) {
	t.row("batch,%d,%d,%d,%d,%d,%t,", e.Size, e.Limit, e.Suggested, e.Target, e.Refused, e.Fallback)
}

// scrape reads putallkv_limiter_tokens from url every 20ms until close; no url, no scraping.
func (t *tracer) scrape(url string) {
	defer close(t.stopped)
	if url == "" {
		return
	}
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			hc.CloseIdleConnections()
			return
		case <-tick.C:
		}
		if tokens, ok := scrapeGauge(hc, url, "putallkv_limiter_tokens"); ok {
			t.row("tokens,,,,,,,%g", tokens)
		}
	}
}

func scrapeGauge(hc *http.Client, url, name string) (float64, bool) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func (t *tracer) close() error {
	close(t.stop)
	<-t.stopped
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.w.Flush(); err != nil {
		return err
	}
	return t.f.Close()
}
