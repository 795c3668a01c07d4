// Package service holds putallkv's use cases: it validates calls against the configured limits,
// makes writes idempotent by request_id, and runs them against a store.Engine. It implements the
// generated kv.KVService interface, so the Kitex handler and the HTTP gateway share one
// implementation of the contract in docs/design.md.
package service

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/limiter"
	"github.com/putallkv/putallkv/pkg/store"
)

// Limits bound what one call may carry. A call over a bound is refused with TOO_LARGE before it
// touches the store.
type Limits struct {
	MaxKeyBytes     int
	MaxValueBytes   int
	MaxBatchEntries int
	// MaxScanEntries and MaxScanBytes bound a Scan page's items and its keys' and values'
	// bytes; 0 means DefaultMaxScanEntries and DefaultMaxScanBytes.
	MaxScanEntries int
	MaxScanBytes   int
}

// Options configure a Service.
type Options struct {
	Limits Limits
	// IdempotencyWindow is how long a request_id's response is kept.
	IdempotencyWindow time.Duration
	// IdempotencyMaxBytes bounds the bytes of the request_ids' records; 0 means
	// DefaultIdempotencyMaxBytes. When a record would cross it, the oldest are evicted.
	IdempotencyMaxBytes int64
	// Admission configures write admission; the zero value admits everything.
	Admission AdmissionSettings
	// Registerer receives the service's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// Recovery holds the idempotency records recovered with a durable store; nil for none.
	Recovery *Recovery
	// Now is the clock for TTLs and idempotency windows; nil means time.Now.
	Now func() time.Time
	// Load bounds the Load streams; the zero value takes the defaults.
	Load LoadSettings
	// Writes, when set, is told the key of every write handed to the engine (applied or not):
	// the hot-key detector (pkg/hotkey) counts them.
	Writes KeyObserver
}

// KeyObserver is told of keys as they are written. Observe is called on the write path, once
// per key, concurrently: it must be cheap and safe for concurrent use.
type KeyObserver interface {
	Observe(key string)
}

// Service implements kv.KVService over a store.Engine.
type Service struct {
	engine    store.Engine
	limits    Limits
	idem      *idempotency
	now       func() time.Time
	metrics   *metrics
	writes    KeyObserver // nil: nobody is told
	bucket    *limiter.Bucket
	admission atomic.Pointer[AdmissionSettings]
	// engineWaits is set when the engine's Apply waits for durability (see PutAllMany).
	engineWaits bool
	// cuts are the snapshot scans open (scan.go).
	cuts openCuts
	// loads are the Load streams open (load.go).
	loads *loadStreams
}

var _ kv.KVService = (*Service)(nil)

// New returns a Service over engine. It registers its metrics with opts.Registerer.
func New(engine store.Engine, opts Options) (*Service, error) {
	l := opts.Limits
	if l.MaxKeyBytes <= 0 || l.MaxValueBytes <= 0 || l.MaxBatchEntries <= 0 {
		return nil, fmt.Errorf("service: limits must be positive, got %+v", l)
	}
	if opts.IdempotencyWindow <= 0 || opts.IdempotencyMaxBytes < 0 {
		return nil, fmt.Errorf("service: idempotency window must be positive and max bytes not negative")
	}
	if opts.IdempotencyMaxBytes == 0 {
		opts.IdempotencyMaxBytes = DefaultIdempotencyMaxBytes
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{
		engine: engine,
		limits: l,
		idem:   newIdempotency(opts.IdempotencyWindow, opts.IdempotencyMaxBytes, now),
		now:    now,
		writes: opts.Writes,
		bucket: limiter.New(0, 1, now),
		loads:  newLoadStreams(opts.Load),
	}
	s.engineWaits = engine.WaitsForDurability()
	a := opts.Admission
	if a.Burst <= 0 {
		a.Burst = l.MaxBatchEntries
	}
	if a.MaxChunk <= 0 {
		a.MaxChunk = l.MaxBatchEntries
	}
	s.SetAdmission(a)
	opts.Recovery.restore(s.idem)
	m, err := newMetrics(opts.Registerer, engine, s.idem, s.bucket)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}
