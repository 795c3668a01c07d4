package rpcguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/gopkg/bufiox"
	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/gopkg/protocol/ttheader"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/kitex/pkg/remote/trans/detection"
	"github.com/cloudwego/kitex/pkg/remote/trans/ttstream"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/serviceinfo"
	"github.com/cloudwego/kitex/pkg/streaming"
	"github.com/cloudwego/netpoll"
)

// StreamOptions bound what TTHeader streams (Kitex's ttstream transport) may make a server hold.
type StreamOptions struct {
	// MaxFrameBytes is the largest frame read; a frame declaring more closes its connection
	// before anything of it is allocated (ttstream allocates a frame's declared payload at
	// once).
	MaxFrameBytes int
	// InflightBytes bounds the payload bytes of a connection's frames that have been read but
	// not yet taken by their stream's handler: ttstream reads a connection's frames as they
	// come and queues them per stream, without flow control of its own, so the connection is
	// not read while its handlers hold this many. It should be at least MaxFrameBytes.
	InflightBytes int
	// Wait bounds how long a connection waits for its handlers to take what it holds before
	// it is closed (a client that floods a stream its handler does not read), and how long a
	// write to it may wait (a client that does not read its acks).
	Wait time.Duration
}

// Streams is the transport of TTHeader streams beside the framed calls (see StreamHandlers),
// and what it holds now.
type Streams struct {
	opts     StreamOptions
	schema   schema
	inflight atomic.Int64 // over every connection
	peak     atomic.Int64

	mu    sync.Mutex
	conns map[*gatedConn]struct{} // open
	live  int                     // streams whose handler runs
	idle  chan struct{}           // closed when live falls to 0
}

// NewStreams returns the stream transport of the service svc, bounded by o.
func NewStreams(o StreamOptions, svc *serviceinfo.ServiceInfo) (*Streams, error) {
	if o.MaxFrameBytes <= 0 || o.InflightBytes < o.MaxFrameBytes || o.Wait <= 0 {
		return nil, fmt.Errorf("rpcguard: stream bounds must be positive and in-flight bytes at least a frame: %+v", o)
	}
	s, err := newSchema(svc)
	if err != nil {
		return nil, fmt.Errorf("rpcguard: %w", err)
	}
	idle := make(chan struct{})
	close(idle)
	return &Streams{opts: o, schema: s, conns: map[*gatedConn]struct{}{}, idle: idle}, nil
}

// enter counts a stream whose handler starts; leave, one whose handler returned.
func (s *Streams) enter() {
	s.mu.Lock()
	if s.live++; s.live == 1 {
		s.idle = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *Streams) leave() {
	s.mu.Lock()
	if s.live--; s.live == 0 {
		close(s.idle)
	}
	s.mu.Unlock()
}

// track adds or removes an open connection.
func (s *Streams) track(c *gatedConn, open bool) {
	s.mu.Lock()
	if open {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

// shutdown waits for the streams' handlers to return (the server has told them to: see
// service.StopLoads), at most until ctx ends, then closes every stream connection: ttstream
// reads a connection until it closes, so an open one would hold the server's shutdown to
// its end.
func (s *Streams) shutdown(ctx context.Context) {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	s.mu.Lock()
	conns := make([]*gatedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Connection.Close()
	}
}

// Inflight is the payload bytes of stream frames read and not yet taken by a handler, over
// every connection.
func (s *Streams) Inflight() int64 { return s.inflight.Load() }

// Peak is the highest Inflight has been.
func (s *Streams) Peak() int64 { return s.peak.Load() }

// Handlers returns the server's transport handlers: framed calls through framed (the
// Handlers of this package over netpoll), and TTHeader streams, detected by their first bytes,
// through Kitex's ttstream handler, which reads each connection through a gate that bounds
// its frames' sizes and what it holds (StreamOptions), and whose stream messages are checked
// against the method's schema before they are decoded, as Codec checks calls.
func (s *Streams) Handlers(framed remote.ServerTransHandlerFactory) remote.ServerTransHandlerFactory {
	return detection.NewSvrTransHandlerFactory(framed, &streamFactory{s: s, inner: ttstream.NewSvrTransHandlerFactory()})
}

type streamFactory struct {
	s     *Streams
	inner remote.ServerTransHandlerFactory
}

// NewTransHandler implements remote.ServerTransHandlerFactory.
func (f *streamFactory) NewTransHandler(opt *remote.ServerOption) (remote.ServerTransHandler, error) {
	h, err := f.inner.NewTransHandler(opt)
	if err != nil {
		return nil, err
	}
	d, ok := h.(detection.DetectableServerTransHandler)
	if !ok {
		return nil, fmt.Errorf("rpcguard: the ttstream handler %T cannot be detected", h)
	}
	return &streamHandler{DetectableServerTransHandler: d, s: f.s}, nil
}

// streamHandler is ttstream's server handler, reading each connection through a gate.
type streamHandler struct {
	detection.DetectableServerTransHandler
	s *Streams
}

type gatedConnKey struct{}

// OnActive implements remote.ServerTransHandler: the connection ttstream reads is gated.
func (h *streamHandler) OnActive(ctx context.Context, conn net.Conn) (context.Context, error) {
	nc, ok := conn.(netpoll.Connection)
	if !ok {
		return ctx, errors.New("rpcguard: a stream connection must be a netpoll connection")
	}
	// A client that stops reading its acks makes the server's writes wait: for at most Wait,
	// then the connection fails and the stream's handler returns.
	_ = nc.SetWriteTimeout(h.s.opts.Wait)
	g := &gatedConn{Connection: nc, gate: newGate(h.s)}
	g.addr = &gatedAddr{Addr: nc.RemoteAddr(), gate: g.gate}
	ctx, err := h.DetectableServerTransHandler.OnActive(ctx, g)
	if err != nil {
		return ctx, err
	}
	h.s.track(g, true)
	return context.WithValue(ctx, gatedConnKey{}, g), nil
}

// OnRead implements remote.ServerTransHandler: ttstream serves the gated connection.
func (h *streamHandler) OnRead(ctx context.Context, conn net.Conn) error {
	if g, ok := ctx.Value(gatedConnKey{}).(*gatedConn); ok {
		conn = g
	}
	return h.DetectableServerTransHandler.OnRead(ctx, conn)
}

// OnInactive implements remote.ServerTransHandler: what the connection held is let go.
func (h *streamHandler) OnInactive(ctx context.Context, conn net.Conn) {
	if g, ok := ctx.Value(gatedConnKey{}).(*gatedConn); ok {
		g.gate.close()
		h.s.track(g, false)
		conn = g
	}
	h.DetectableServerTransHandler.OnInactive(ctx, conn)
}

// SetInvokeHandleFunc implements remote.InvokeHandleFuncSetter: each stream's handler reads
// its messages through checkedStream.
func (h *streamHandler) SetInvokeHandleFunc(f endpoint.Endpoint) {
	s, ok := h.DetectableServerTransHandler.(remote.InvokeHandleFuncSetter)
	if !ok {
		return
	}
	s.SetInvokeHandleFunc(func(ctx context.Context, req, resp any) error {
		args, ok := req.(*streaming.Args)
		if !ok || args.ServerStream == nil {
			return f(ctx, req, resp)
		}
		ri := rpcinfo.GetRPCInfo(ctx)
		addr, _ := ri.From().Address().(*gatedAddr)
		sid, ok := streamID(args.ServerStream)
		if addr == nil || !ok {
			return remote.NewTransErrorWithMsg(remote.InternalError, "the stream cannot be accounted for")
		}
		h.s.enter()
		defer h.s.leave()
		defer addr.gate.end(sid)
		args.ServerStream = &checkedStream{ServerStream: args.ServerStream, gate: addr.gate, sid: sid,
			node: h.s.messageNode(ri.Invocation().MethodName())}
		return f(ctx, req, resp)
	})
}

// GracefulShutdown implements remote.GracefulShutdown: see Streams.shutdown.
func (h *streamHandler) GracefulShutdown(ctx context.Context) error {
	h.s.shutdown(ctx)
	return nil
}

// messageNode is the schema of a stream message of method: its arguments' first field.
func (s *Streams) messageNode(method string) *node {
	args, ok := s.schema[method]
	if !ok {
		return nil
	}
	return args.field(1, thrift.STRUCT)
}

// streamID reads the stream id of a ttstream server stream, which ttstream keeps unexported:
// the gate accounts frames by it. (Kitex is pinned; were the field to move, every stream would
// be refused, and every Load test fails.)
func streamID(st streaming.ServerStream) (int32, bool) {
	v := reflect.ValueOf(st)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return 0, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0, false
	}
	f := v.FieldByName("sid")
	if !f.IsValid() || f.Kind() != reflect.Int32 {
		return 0, false
	}
	return int32(f.Int()), true
}

// checkedStream is a server stream whose messages are checked against the schema before they
// are decoded, and whose bytes the gate lets go once taken.
type checkedStream struct {
	streaming.ServerStream
	gate *gate
	sid  int32
	node *node // nil: no check (a method the schema lacks)
}

// RecvMsg implements streaming.ServerStream.
func (s *checkedStream) RecvMsg(ctx context.Context, m any) error {
	if fc, ok := m.(thrift.FastCodec); ok {
		m = &checkedMessage{FastCodec: fc, s: s}
	}
	return s.ServerStream.RecvMsg(ctx, m)
}

// checkedMessage is a message decoded only after its bytes pass the check.
type checkedMessage struct {
	thrift.FastCodec
	s *checkedStream
}

// FastRead implements thrift.FastCodec.
func (m *checkedMessage) FastRead(b []byte) (int, error) {
	m.s.gate.release(m.s.sid, len(b))
	if m.s.node != nil {
		if bad := check(b, 0, m.s.node); bad != nil {
			return 0, &refusal{typeID: TypeMalformed, msg: "malformed stream message: " + bad.Error()}
		}
	}
	return m.FastCodec.FastRead(b)
}

// IsRefusal reports whether err is this package's refusal of a stream message.
func IsRefusal(err error) bool {
	var r *refusal
	return err != nil && errors.As(err, &r)
}

// gatedAddr is a gated connection's remote address, which carries its gate to the stream
// handlers (ttstream makes each stream's rpcinfo from the connection's address).
type gatedAddr struct {
	net.Addr
	gate *gate
}

// gatedConn is a connection ttstream reads through its gate.
type gatedConn struct {
	netpoll.Connection
	gate *gate
	addr *gatedAddr
	r    gatedReader
	once sync.Once
}

// Reader implements netpoll.Connection.
func (c *gatedConn) Reader() netpoll.Reader {
	c.once.Do(func() { c.r = gatedReader{Reader: c.Connection.Reader(), gate: c.gate} })
	return &c.r
}

// RemoteAddr implements net.Conn.
func (c *gatedConn) RemoteAddr() net.Addr { return c.addr }

// SetOnDisconnect passes ttstream's disconnect callback to the connection.
func (c *gatedConn) SetOnDisconnect(f netpoll.OnDisconnect) error {
	s, ok := c.Connection.(interface {
		SetOnDisconnect(netpoll.OnDisconnect) error
	})
	if !ok {
		return errors.New("rpcguard: the connection has no disconnect callback")
	}
	return s.SetOnDisconnect(f)
}

// ttheaderFixed is the fixed part of a TTHeader frame: length (4), magic (2), flags (2),
// sequence id (4; a stream's id), header size in 4-byte words (2).
const ttheaderFixed = 14

// gatedReader reads a connection's frames for ttstream (which uses Next, Peek, Skip and
// Release), and before the first byte of each frame reads its TTHeader head and header: a frame
// over MaxFrameBytes is refused, a header frame (re)opens its stream in the gate, and the
// frame's payload is charged to the gate, waiting while the gate is full.
type gatedReader struct {
	netpoll.Reader
	gate *gate
	left int // bytes of the current frame not yet read; 0 at a frame's start
}

func (r *gatedReader) enter() error {
	if r.left > 0 {
		return nil
	}
	h, err := r.Reader.Peek(ttheaderFixed)
	if err != nil {
		return err
	}
	length := int64(binary.BigEndian.Uint32(h))
	payload := length - 10 - 4*int64(binary.BigEndian.Uint16(h[12:]))
	switch max := int64(r.gate.s.opts.MaxFrameBytes); {
	case length > max:
		return fmt.Errorf("rpcguard: a stream frame of %d bytes is over the limit of %d bytes", length, max)
	case payload < 0:
		return fmt.Errorf("rpcguard: a stream frame's header is longer than the frame")
	}
	sid := int32(binary.BigEndian.Uint32(h[8:]))
	if h, err = r.Reader.Peek(int(length) + 4 - int(payload)); err != nil { // the TTHeader head and header
		return err
	}
	dp, err := ttheader.Decode(context.Background(), bufiox.NewBytesReader(h))
	if err != nil {
		return err
	}
	if dp.IntInfo[ttheader.FrameType] == ttheader.FrameTypeHeader {
		r.gate.open(sid) // a new stream, even on the id of an ended one: its frames are charged
	}
	if err := r.gate.admit(sid, payload); err != nil {
		return err
	}
	r.left = int(4 + length)
	return nil
}

// Next implements netpoll.Reader.
func (r *gatedReader) Next(n int) ([]byte, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	p, err := r.Reader.Next(n)
	r.left -= len(p)
	return p, err
}

// Peek implements netpoll.Reader.
func (r *gatedReader) Peek(n int) ([]byte, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	return r.Reader.Peek(n)
}

// Skip implements netpoll.Reader.
func (r *gatedReader) Skip(n int) error {
	if err := r.enter(); err != nil {
		return err
	}
	err := r.Reader.Skip(n)
	if err == nil {
		r.left -= n
	}
	return err
}

// endedStreams is how many ended stream ids a gate remembers, so that frames still arriving
// for them (ttstream drops those) are not charged.
const endedStreams = 256

// gate accounts the payload bytes a connection's streams hold: charged as each frame is read,
// let go as the stream's handler takes the message, or when the handler ends.
type gate struct {
	s        *Streams
	mu       sync.Mutex
	wake     chan struct{} // closed (and replaced) when bytes are let go
	inflight int64
	held     map[int32]int64
	ended    map[int32]struct{}
	order    []int32 // ended ids, oldest first
	closed   bool
}

func newGate(s *Streams) *gate {
	return &gate{s: s, wake: make(chan struct{}), held: map[int32]int64{}, ended: map[int32]struct{}{}}
}

// admit charges n payload bytes to stream sid, waiting while the connection holds
// InflightBytes (at most Wait).
func (g *gate) admit(sid int32, n int64) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	g.mu.Lock()
	for {
		if _, ok := g.ended[sid]; ok || n == 0 || g.closed {
			g.mu.Unlock()
			return nil
		}
		if g.inflight == 0 || g.inflight+n <= int64(g.s.opts.InflightBytes) {
			break
		}
		wake := g.wake
		g.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(g.s.opts.Wait)
		}
		select {
		case <-wake:
		case <-timer.C:
			return fmt.Errorf("rpcguard: the connection's streams held %d bytes unread for %s", g.s.opts.InflightBytes, g.s.opts.Wait)
		}
		g.mu.Lock()
	}
	g.inflight += n
	g.held[sid] += n
	g.mu.Unlock()
	g.s.add(n)
	return nil
}

// release lets go n bytes of stream sid (a message its handler took).
func (g *gate) release(sid int32, n int) {
	g.mu.Lock()
	k := min(int64(n), g.held[sid])
	g.let(sid, k)
	g.mu.Unlock()
}

// open forgets that stream sid ended: a header frame opens a stream on it again.
func (g *gate) open(sid int32) {
	g.mu.Lock()
	delete(g.ended, sid)
	g.mu.Unlock()
}

// end lets go what stream sid holds: its handler has returned.
func (g *gate) end(sid int32) {
	g.mu.Lock()
	g.let(sid, g.held[sid])
	delete(g.held, sid)
	g.ended[sid] = struct{}{}
	if g.order = append(g.order, sid); len(g.order) > endedStreams {
		delete(g.ended, g.order[0])
		g.order = g.order[1:]
	}
	g.mu.Unlock()
}

// close lets go everything: the connection is gone.
func (g *gate) close() {
	g.mu.Lock()
	for sid, n := range g.held {
		g.let(sid, n)
	}
	g.closed = true
	g.mu.Unlock()
}

// let takes k bytes off sid's charge and wakes a waiting reader; g.mu is held.
func (g *gate) let(sid int32, k int64) {
	if k <= 0 {
		return
	}
	g.held[sid] -= k
	g.inflight -= k
	g.s.add(-k)
	close(g.wake)
	g.wake = make(chan struct{})
}

// add counts n bytes more (or fewer) held over every connection.
func (s *Streams) add(n int64) {
	v := s.inflight.Add(n)
	for p := s.peak.Load(); v > p && !s.peak.CompareAndSwap(p, v); p = s.peak.Load() {
	}
}
