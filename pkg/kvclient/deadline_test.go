package kvclient

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// silentServer accepts connections and reads requests but never answers: a server that hangs.
type silentServer struct {
	ln       net.Listener
	requests chan struct{} // one send per read of request bytes
	closed   chan struct{} // one send per connection the client closed
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startSilentServer(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln, requests: make(chan struct{}, 16), closed: make(chan struct{}, 16)}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *silentServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					if errors.Is(err, io.EOF) {
						s.closed <- struct{}{}
					}
					return
				}
				s.requests <- struct{}{}
			}
		}()
	}
}

func (s *silentServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func newSilentClient(t *testing.T, s *silentServer) *Client {
	t.Helper()
	// No RPC timeout and no retries: only the caller's context can end a call.
	c, err := New([]string{s.ln.Addr().String()}, WithRPCTimeout(0), WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestCancelEndsCallInFlight checks that canceling a call's context ends the call while it
// waits for an answer, with an error that says so, and that the connection it held is closed
// rather than reused (a late answer on it would be taken for the next call's).
func TestCancelEndsCallInFlight(t *testing.T) {
	s := startSilentServer(t)
	c := newSilentClient(t, s)
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-s.requests // the request is on the wire
			cancel()
		}()
		_, err := c.Get(ctx, &kv.GetRequest{Key: "k"})
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: err = %v, want UNAVAILABLE wrapping context.Canceled", i, err)
		}
		<-s.closed // the client closed the connection
		cancel()
	}
	if n := s.accepted(); n != 2 {
		t.Fatalf("%d connections for 2 calls; want a fresh one after each canceled call", n)
	}
}

// TestDeadlineEndsCallInFlight checks that a call whose deadline passes while it waits for an
// answer ends with context.DeadlineExceeded.
func TestDeadlineEndsCallInFlight(t *testing.T) {
	s := startSilentServer(t)
	c := newSilentClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "k", Value: []byte("v")}}})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want UNAVAILABLE wrapping context.DeadlineExceeded", err)
	}
	<-s.closed
}

// passedDeadline is a context whose deadline has passed but whose timer has not yet marked it
// done, as a context.WithDeadline is between the two.
type passedDeadline struct{ context.Context }

func (passedDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func TestContextEnd(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"no deadline", context.Background(), nil},
		{"deadline ahead", deadlineAhead(t), nil},
		{"canceled", canceled, context.Canceled},
		{"deadline passed, timer not yet fired", passedDeadline{context.Background()}, context.DeadlineExceeded},
	} {
		if got := contextEnd(c.ctx); !errors.Is(got, c.want) || (c.want == nil) != (got == nil) {
			t.Errorf("%s: contextEnd = %v; want %v", c.name, got, c.want)
		}
	}
}

func deadlineAhead(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	t.Cleanup(cancel)
	return ctx
}
