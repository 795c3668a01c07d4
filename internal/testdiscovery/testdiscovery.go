// Package testdiscovery is the test of a client whose servers a resolver finds (DNS, etcd):
// one scenario that any way of finding servers must pass, with real servers behind it. A
// server started later is used without restarting the client; a server that stops stops
// receiving calls; and meanwhile no call fails that the retry policy could have saved.
package testdiscovery

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/rpcinfo"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// Cluster is the servers behind a resolver, as a way of finding them sees them.
type Cluster interface {
	// Add starts a server and makes it findable; the Cluster stops it when the test ends.
	Add(t *testing.T) *server.Server
	// Remove stops s and makes it unfindable, in the order the way of finding servers does
	// it (a registered server deregisters before it stops; a DNS record outlives its server).
	Remove(t *testing.T, s *server.Server)
}

// Nodes starts servers that a test may stop before it ends: each is stopped once, by Stop or
// when the test ends.
type Nodes struct {
	mu      sync.Mutex
	running map[*server.Server]bool
}

// Start runs the real server from cfg in-process until Stop or the end of t.
func (n *Nodes) Start(t *testing.T, cfg *config.Config) *server.Server {
	t.Helper()
	s, err := server.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	if n.running == nil {
		n.running = map[*server.Server]bool{}
	}
	n.running[s] = true
	n.mu.Unlock()
	t.Cleanup(func() { n.Stop(t, s) })
	return s
}

// Stop shuts s down gracefully, unless it is already stopped.
func (n *Nodes) Stop(t *testing.T, s *server.Server) {
	t.Helper()
	n.mu.Lock()
	running := n.running[s]
	delete(n.running, s)
	n.mu.Unlock()
	if running {
		testnet.Stop(t, s)
	}
}

// Refresh is how often the scenario's client asks its resolver again.
const Refresh = 50 * time.Millisecond

// wait bounds each wait of the scenario for something to happen.
const wait = 20 * time.Second

// quiet is how many calls in a row must reach no stopped server before it counts as dropped.
const quiet = 300

// Churn runs the scenario: newClient makes the client under test from opts (which it must
// pass on), over the servers c finds.
func Churn(t *testing.T, c Cluster, newClient func(opts ...kvclient.Option) (*kvclient.Client, error)) {
	a := c.Add(t)
	sent := NewSends()
	cl, err := newClient(kvclient.WithRefreshInterval(Refresh), kvclient.WithConnectTimeout(time.Second),
		kvclient.WithKitexOptions(client.WithInstanceMW(sent.Middleware)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()

	l := startLoad(cl)
	defer l.stop(t)
	sent.await(t, l, "the first server", func() bool { return sent.To(a.RPCAddr()) > 0 })

	b := c.Add(t)
	sent.await(t, l, "a server added while the client runs", func() bool { return sent.To(b.RPCAddr()) > 0 })

	c.Remove(t, a)
	sent.await(t, l, "the stopped server to be dropped", sent.quietFor(a.RPCAddr(), l))
	before := sent.To(a.RPCAddr())
	l.awaitCalls(t, quiet)
	if n := sent.To(a.RPCAddr()) - before; n != 0 {
		t.Errorf("the stopped server %s was sent %d attempts after it was dropped", a.RPCAddr(), n)
	}
	calls, failed := l.stop(t)
	if len(failed) > 0 {
		t.Errorf("%d of %d calls failed, each one the retry policy could have saved; first: %v", len(failed), calls, failed[0])
	}
	t.Logf("%d calls, none failed; attempts: %d to the stopped server, %d to the added one",
		calls, sent.To(a.RPCAddr()), sent.To(b.RPCAddr()))
}

// Sends counts the attempts that reach each server address, through a Kitex instance
// middleware (client.WithInstanceMW(s.Middleware)): it runs after the load balancer picked the
// server and after the breaker let the attempt through, so it counts exactly what is dialled
// or sent.
type Sends struct {
	mu     sync.Mutex
	byAddr map[string]int
}

// NewSends returns a counter of no attempts yet.
func NewSends() *Sends { return &Sends{byAddr: map[string]int{}} }

// Middleware counts each attempt under the address it goes to.
func (s *Sends) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req, resp any) error {
		addr := rpcinfo.GetRPCInfo(ctx).To().Address().String()
		s.mu.Lock()
		s.byAddr[addr]++
		s.mu.Unlock()
		return next(ctx, req, resp)
	}
}

// To is how many attempts went to addr.
func (s *Sends) To(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byAddr[addr]
}

// quietFor returns a condition that holds once quiet calls in a row have reached anything
// but addr.
func (s *Sends) quietFor(addr string, l *load) func() bool {
	last, since := s.To(addr), l.done()
	return func() bool {
		if n := s.To(addr); n != last {
			last, since = n, l.done()
		}
		return l.done()-since >= quiet
	}
}

// await waits, at most wait, for cond, while the load runs; it fails t naming what.
func (s *Sends) await(t *testing.T, l *load, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; attempts by address: %v", wait, what, s.snapshot())
		}
		l.awaitCalls(t, 1)
	}
}

func (s *Sends) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.byAddr))
	for k, v := range s.byAddr {
		m[k] = v
	}
	return m
}

// load calls the client from one goroutine until stopped: reads, and writes that carry a
// request_id, so that every failure is one the retry policy may retry.
type load struct {
	cancel   context.CancelFunc
	finished chan struct{}

	mu     sync.Mutex
	calls  int
	failed []error
	tick   chan struct{} // closed and replaced after each call
}

func startLoad(c *kvclient.Client) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, finished: make(chan struct{}), tick: make(chan struct{})}
	run := time.Now().UnixNano() // request ids unique to this load
	go func() {
		defer close(l.finished)
		for i := 0; ctx.Err() == nil; i++ {
			callCtx, done := context.WithTimeout(ctx, 10*time.Second)
			var err error
			if i%2 == 0 {
				id := fmt.Sprintf("churn-%d-%d", run, i)
				_, err = c.Put(callCtx, &kv.PutRequest{Key: fmt.Sprintf("churn/%d", i%64), Value: []byte("v"), RequestId: &id})
			} else {
				_, err = c.GetAll(callCtx, &kv.GetAllRequest{Keys: []string{fmt.Sprintf("churn/%d", i%64)}})
			}
			done()
			l.mu.Lock()
			if err != nil && ctx.Err() == nil {
				l.failed = append(l.failed, fmt.Errorf("call %d: %w", i, err))
			}
			l.calls++
			close(l.tick)
			l.tick = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

// done is how many calls have ended.
func (l *load) done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// awaitCalls waits, at most wait, until n more calls have ended.
func (l *load) awaitCalls(t *testing.T, n int) {
	t.Helper()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for range n {
		l.mu.Lock()
		tick := l.tick
		l.mu.Unlock()
		select {
		case <-tick:
		case <-l.finished:
			t.Fatal("the load stopped")
		case <-timeout.C:
			t.Fatalf("no call ended within %s", wait)
		}
	}
}

// stop ends the load and returns how many calls it made and which failed. It may be called
// again.
func (l *load) stop(t *testing.T) (int, []error) {
	t.Helper()
	l.cancel()
	select {
	case <-l.finished:
	case <-time.After(wait):
		t.Fatalf("the load did not stop within %s", wait)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, l.failed
}
