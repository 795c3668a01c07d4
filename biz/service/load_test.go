package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/kitex/pkg/streaming"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
)

// silentStream is a Load stream whose client never sends a chunk: Recv waits for the end of
// the stream's context. (The stream as Kitex serves it is tested end to end in test/e2e; its
// bounds on time are tested here, where they can be short.)
type silentStream struct {
	streaming.ServerStream
	receiving chan struct{} // closed at the first Recv
}

func (s *silentStream) RecvMsg(ctx context.Context, _ any) error {
	select {
	case <-s.receiving:
	default:
		close(s.receiving)
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *silentStream) Recv(ctx context.Context) (*kv.LoadChunk, error) {
	return nil, s.RecvMsg(ctx, nil)
}

func (s *silentStream) Send(context.Context, *kv.LoadAck) error { return nil }

func newSilentStream() *silentStream { return &silentStream{receiving: make(chan struct{})} }

func newLoadService(t *testing.T, l LoadSettings) *Service {
	t.Helper()
	engine, err := store.NewMemory(store.Options{Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	s, err := New(engine, Options{Limits: testLimits, IdempotencyWindow: time.Minute, Load: l})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLoadBounds: a stream that sends nothing is ended after the idle bound; one stream more
// than MaxStreams is refused; StopLoads ends the open streams and refuses new ones.
func TestLoadBounds(t *testing.T) {
	ctx := context.Background()
	s := newLoadService(t, LoadSettings{MaxStreams: 1, Idle: 20 * time.Millisecond})
	err := s.Load(ctx, newSilentStream())
	if ke := wantCode(t, err, kv.ErrorCode_UNAVAILABLE); !strings.Contains(ke.Message, "sent no chunk") {
		t.Errorf("idle stream: %v", err)
	}

	s = newLoadService(t, LoadSettings{MaxStreams: 1, Idle: time.Hour})
	first := newSilentStream()
	done := make(chan error, 1)
	go func() { done <- s.Load(ctx, first) }()
	<-first.receiving // the first stream holds the one slot
	wantCode(t, s.Load(ctx, newSilentStream()), kv.ErrorCode_RESOURCE_EXHAUSTED)
	s.StopLoads()
	if ke := wantCode(t, <-done, kv.ErrorCode_UNAVAILABLE); !strings.Contains(ke.Message, "shutting down") {
		t.Errorf("the open stream at StopLoads: %v", ke)
	}
	wantCode(t, s.Load(ctx, newSilentStream()), kv.ErrorCode_UNAVAILABLE)
}
