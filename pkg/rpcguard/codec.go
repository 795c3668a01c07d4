// Package rpcguard makes a Kitex server read only requests it can afford: no request crashes
// it, bloats it, or goes unanswered because it was refused.
//
// Codec wraps Kitex's default codec. It takes framed requests only (Framed or TTHeader), whose
// size is declared up front, refuses one over the size limit before reading its body, and
// checks every request's bytes against the method's schema before the generated decoder runs
// (see check): Kitex's generated FastRead allocates for a list's declared length before it
// reads an element, so 38 bytes declaring a list of 2^31 elements made it allocate tens of
// gigabytes, and garbage after a valid header made it panic. A refused request is answered
// with an exception the SDK maps to a code: TypeTooLarge (TOO_LARGE) or TypeMalformed
// (INVALID_ARGUMENT), with a short sentence and never a panic's text.
//
// Handlers wraps the server's transport handler: it reads and discards the body of an
// oversized request after answering it, for up to a deadline, so the caller, still writing,
// is not reset before it reads the answer; and it logs refused requests as rate-limited
// lines instead of Kitex's error line (and stack) per request.
package rpcguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/kitex/pkg/remote/codec"
	"github.com/cloudwego/kitex/pkg/remote/codec/perrors"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/serviceinfo"
	"github.com/cloudwego/kitex/transport"
	"github.com/cloudwego/netpoll"
)

// Exception type ids of refused requests, outside the range Thrift and Kitex use for their
// own application exceptions.
const (
	// TypeTooLarge is a request over the server's size limit.
	TypeTooLarge int32 = 4130
	// TypeMalformed is a request whose bytes are not a well-formed call of the service.
	TypeMalformed int32 = 4131
)

// refusal is a request the codec refused. As a *remote.TransError's cause it is answered to
// the caller (Kitex replies with the TransError); alone it is not (the call could not be
// named, so there is nothing to address an answer to).
type refusal struct {
	typeID int32
	msg    string // what the caller is told
	method string // the call's method, when known
	detail string // for the log only
	unread int    // bytes of the refused request not read yet (an oversized body)
}

func (r *refusal) Error() string { return r.msg }

// answer returns r as the error Kitex answers: a TransError when the call is named.
func (r *refusal) answer() error {
	if r.method == "" {
		return r
	}
	return remote.NewTransError(r.typeID, r)
}

// Codec is Kitex's default codec with a request size limit and a check of every request's
// bytes before they are decoded.
type Codec struct {
	inner    remote.Codec
	metaDec  remote.MetaDecoder
	maxBytes int
	schema   schema
	names    map[string]string // each method's name, to return without allocating
	metrics  *Metrics          // counts refusals; nil counts nothing
}

// CountRefusals makes c count every request it refuses in m, and returns c.
func (c *Codec) CountRefusals(m *Metrics) *Codec {
	c.metrics = m
	return c
}

// counted counts *err when it is a refusal; deferred by the decoding methods.
func (c *Codec) counted(err *error) {
	var r *refusal
	if *err != nil && errors.As(*err, &r) { // *err first: errors.As allocates
		c.metrics.count(r)
	}
}

// New returns a codec for the service svc that refuses requests over maxBytes and requests
// the service's generated decoder could not read within bounds.
func New(maxBytes int, svc *serviceinfo.ServiceInfo) (*Codec, error) {
	s, err := newSchema(svc)
	if err != nil {
		return nil, fmt.Errorf("rpcguard: %w", err)
	}
	names := map[string]string{}
	for name := range s {
		names[name] = name
	}
	inner := codec.NewDefaultCodecWithSizeLimit(maxBytes)
	return &Codec{inner: inner, metaDec: inner.(remote.MetaDecoder), maxBytes: maxBytes, schema: s, names: names}, nil
}

// Name implements remote.Codec.
func (c *Codec) Name() string { return c.inner.Name() }

// Encode implements remote.Codec.
func (c *Codec) Encode(ctx context.Context, msg remote.Message, out remote.ByteBuffer) error {
	return c.inner.Encode(ctx, msg, out)
}

// Decode implements remote.Codec.
func (c *Codec) Decode(ctx context.Context, msg remote.Message, in remote.ByteBuffer) error {
	if err := c.DecodeMeta(ctx, msg, in); err != nil {
		return err
	}
	return c.DecodePayload(ctx, msg, in)
}

// DecodeMeta implements remote.MetaDecoder: it reads the framing (where the default codec
// checks the size) and refuses an oversized or unframed request.
func (c *Codec) DecodeMeta(ctx context.Context, msg remote.Message, in remote.ByteBuffer) (err error) {
	defer c.counted(&err)
	err = c.metaDec.DecodeMeta(ctx, msg, in)
	switch {
	case err == nil && msg.PayloadLen() > 0:
		return nil
	case err == nil && msg.PayloadLen() < 0:
		return &refusal{typeID: TypeMalformed, msg: "malformed request: its header is longer than its frame"}
	case err == nil:
		r := &refusal{typeID: TypeMalformed, msg: "the request is not framed: this server reads Framed or TTHeader " +
			"requests only (a Kitex client sets client.WithTransportProtocol(transport.TTHeader))"}
		r.method = nameCall(msg, in)
		return r.answer()
	case msg.PayloadLen() > c.maxBytes: // the default codec's refusal, which it reports as a protocol error
		r := &refusal{typeID: TypeTooLarge, unread: msg.PayloadLen(),
			msg: fmt.Sprintf("the request's %d bytes are over the server's limit of %d bytes (server.max_request_bytes)",
				msg.PayloadLen(), c.maxBytes)}
		if r.method = nameCall(msg, in); r.method != "" {
			replyLikeRequest(msg)
		}
		return r.answer()
	case isProtocolViolation(err):
		return &refusal{typeID: TypeMalformed, msg: "not a request this server reads (framed Thrift)", detail: err.Error()}
	}
	return err
}

// isProtocolViolation reports whether err is the default codec's refusal of bytes that are
// not a request it knows (rather than a failure to read them).
func isProtocolViolation(err error) bool {
	var pe perrors.ProtocolError
	return errors.As(err, &pe) && !isReadFailure(err)
}

// readFailures are the errors of a connection that failed to deliver bytes: closed, reset or
// timed out.
var readFailures = []error{netpoll.ErrEOF, netpoll.ErrConnClosed, netpoll.ErrReadTimeout,
	io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, os.ErrDeadlineExceeded, syscall.ECONNRESET, syscall.EPIPE}

func isReadFailure(err error) bool {
	for _, e := range readFailures {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// nameCall reads the Thrift message header at the start of the payload and names the call
// with it, so that an exception can be addressed to it (Kitex will not encode a reply without
// a method name, and the client matches replies by sequence id). It returns the method name,
// or "" when the header cannot be read.
func nameCall(msg remote.Message, in remote.ByteBuffer) string {
	const fixed = 4 + 4 // version and type, then the name's length
	head, err := in.Peek(fixed)
	if err != nil {
		return ""
	}
	nameLen := int(binary.BigEndian.Uint32(head[4:]))
	if nameLen <= 0 || nameLen > 256 {
		return ""
	}
	head, err = in.Peek(fixed + nameLen + 4)
	if err != nil {
		return ""
	}
	name, _, seq, _, err := thrift.Binary.ReadMessageBegin(head)
	if err != nil {
		return ""
	}
	setCall(msg, name, seq)
	return name
}

// replyLikeRequest sets the transport of the answer to an oversized request to the request's,
// which the default codec leaves unset when it refuses the size.
func replyLikeRequest(msg remote.Message) {
	cfg := rpcinfo.AsMutableRPCConfig(msg.RPCInfo().Config())
	if cfg == nil {
		return
	}
	tp := transport.Framed
	if _, ok := msg.Tags()[codec.HeaderFlagsKey]; ok { // set by the TTHeader decoder
		tp = transport.TTHeader
	}
	cfg.SetTransportProtocol(tp)
	cfg.SetPayloadCodec(serviceinfo.Thrift)
}

func setCall(msg remote.Message, method string, seq int32) {
	if inv, ok := msg.RPCInfo().Invocation().(rpcinfo.InvocationSetter); ok {
		inv.SetMethodName(method)
		inv.SetSeqID(seq)
	}
}

// DecodePayload implements remote.MetaDecoder: it checks the request's bytes, then decodes
// them with the generated decoder.
func (c *Codec) DecodePayload(ctx context.Context, msg remote.Message, in remote.ByteBuffer) (err error) {
	defer c.counted(&err) // after the recover below has turned a panic into a refusal
	// The whole frame, at most maxBytes (DecodeMeta checked), is read before it is decoded
	// anyway; peeking at it first costs no copy when it is in one buffer.
	payload, err := in.Peek(msg.PayloadLen())
	if err != nil {
		return err
	}
	method, seq, r := c.inspect(payload)
	if method != "" {
		setCall(msg, method, seq)
	}
	if r != nil {
		return r.answer()
	}
	defer func() {
		if p := recover(); p != nil { // a gap in the check: still the request's fault
			err = (&refusal{typeID: TypeMalformed, msg: "malformed request", method: method,
				detail: fmt.Sprintf("the decoder panicked: %v", p)}).answer()
		}
	}()
	return c.metaDec.DecodePayload(ctx, msg, in)
}

// Check returns why the codec would refuse payload, a Thrift message (header and arguments),
// before decoding it; nil means the service's generated decoder reads it within bounds.
func (c *Codec) Check(payload []byte) error {
	if _, _, r := c.inspect(payload); r != nil {
		return r
	}
	return nil
}

// inspect reads the message header of payload and checks the arguments after it against the
// method's schema. It returns the call's method and sequence id (when the header could be
// read) and the refusal, if any.
func (c *Codec) inspect(payload []byte) (string, int32, *refusal) {
	name, typ, seq, hdr, ok := messageBegin(payload)
	if !ok {
		return "", 0, &refusal{typeID: TypeMalformed, msg: "malformed request: no Thrift message header"}
	}
	args, known := c.schema[string(name)] // no allocation for the lookup
	method := c.names[string(name)]
	if !known {
		method = string(name)
	}
	switch {
	case typ != thrift.CALL:
		return method, seq, &refusal{typeID: TypeMalformed, method: method,
			msg: fmt.Sprintf("malformed request: message type %d; the server takes calls (type %d) only", typ, thrift.CALL)}
	case !known:
		return method, seq, &refusal{typeID: remote.UnknownMethod, method: method, msg: fmt.Sprintf("unknown method %q", method)}
	}
	if m := check(payload[hdr:], hdr, args); m != nil {
		return method, seq, &refusal{typeID: TypeMalformed, method: method, msg: "malformed request: " + m.Error()}
	}
	return method, seq, nil
}

// messageBegin reads a strict Thrift binary message header (as the Kitex codec does) without
// allocating: the method name (in b), the message type, the sequence id and the header's
// length; ok is false when b does not start with one.
func messageBegin(b []byte) (name []byte, typ thrift.TMessageType, seq int32, n int, ok bool) {
	const version1, versionMask = 0x80010000, 0xffff0000
	if len(b) < 8 {
		return nil, 0, 0, 0, false
	}
	head := binary.BigEndian.Uint32(b)
	l := int(int32(binary.BigEndian.Uint32(b[4:])))
	if head&versionMask != version1 || l < 0 || l > len(b)-12 {
		return nil, 0, 0, 0, false
	}
	return b[8 : 8+l], thrift.TMessageType(head & 0xffff), int32(binary.BigEndian.Uint32(b[8+l:])), 12 + l, true
}

// IsTooLarge reports whether err, as returned by a Kitex client call, is a server's refusal of
// an oversized request.
func IsTooLarge(err error) bool { return isType(err, TypeTooLarge) }

// IsMalformed reports whether err, as returned by a Kitex client call, is a server's refusal of
// a request whose bytes were not a well-formed call.
func IsMalformed(err error) bool { return isType(err, TypeMalformed) }

func isType(err error, typeID int32) bool {
	var te *remote.TransError
	return errors.As(err, &te) && te.TypeID() == typeID
}
