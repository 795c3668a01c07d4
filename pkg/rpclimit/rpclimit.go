// Package rpclimit bounds the size of a request a Kitex server will read, and makes the refusal
// reach the caller as an answer rather than a dropped connection.
//
// Kitex's default codec can enforce a size limit, but it reports a violation as a protocol
// error, on which the server closes the connection without replying: the caller sees only EOF
// and cannot tell an oversized request from a crash. Codec turns the violation into a transport
// exception of type TypeTooLarge, which Kitex sends back before closing the connection, so a
// client can recognise it (see IsTooLarge).
package rpclimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/kitex/pkg/remote/codec"
	"github.com/cloudwego/kitex/pkg/remote/codec/perrors"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
)

// TypeTooLarge is the exception type id of a refused oversized request. It is outside the
// range Thrift and Kitex use for their own application exceptions.
const TypeTooLarge int32 = 4130

// Codec is Kitex's default codec with a request size limit whose refusals are answered.
type Codec struct {
	inner    remote.Codec
	metaDec  remote.MetaDecoder
	maxBytes int
}

// New returns a codec that refuses requests whose payload is over maxBytes.
func New(maxBytes int) *Codec {
	inner := codec.NewDefaultCodecWithSizeLimit(maxBytes)
	return &Codec{inner: inner, metaDec: inner.(remote.MetaDecoder), maxBytes: maxBytes}
}

// Name implements remote.Codec.
func (c *Codec) Name() string { return c.inner.Name() }

// Encode implements remote.Codec.
func (c *Codec) Encode(ctx context.Context, msg remote.Message, out remote.ByteBuffer) error {
	return c.inner.Encode(ctx, msg, out)
}

// Decode implements remote.Codec.
func (c *Codec) Decode(ctx context.Context, msg remote.Message, in remote.ByteBuffer) error {
	return c.answerable(c.inner.Decode(ctx, msg, in))
}

// DecodeMeta implements remote.MetaDecoder; this is where the default codec checks the size.
func (c *Codec) DecodeMeta(ctx context.Context, msg remote.Message, in remote.ByteBuffer) error {
	err := c.answerable(c.metaDec.DecodeMeta(ctx, msg, in))
	if err != nil && IsTooLarge(err) { // err first: IsTooLarge allocates
		nameCall(msg, in)
	}
	return err
}

// nameCall reads the Thrift message header at the start of the refused payload, so the
// exception can be addressed to the call (Kitex will not encode a reply without a method name,
// and the client matches replies by sequence id).
func nameCall(msg remote.Message, in remote.ByteBuffer) {
	const fixed = 4 + 4 // version and type, then the name's length
	head, err := in.Peek(fixed)
	if err != nil {
		return
	}
	nameLen := int(binary.BigEndian.Uint32(head[4:]))
	if nameLen <= 0 || nameLen > 256 {
		return
	}
	head, err = in.Peek(fixed + nameLen + 4)
	if err != nil {
		return
	}
	name, _, seq, _, err := thrift.Binary.ReadMessageBegin(head)
	if err != nil {
		return
	}
	if inv, ok := msg.RPCInfo().Invocation().(rpcinfo.InvocationSetter); ok {
		inv.SetMethodName(name)
		inv.SetSeqID(seq)
	}
}

// DecodePayload implements remote.MetaDecoder.
func (c *Codec) DecodePayload(ctx context.Context, msg remote.Message, in remote.ByteBuffer) error {
	return c.metaDec.DecodePayload(ctx, msg, in)
}

// answerable turns the default codec's size violation into a transport exception, which the
// server replies with; any other error passes through.
func (c *Codec) answerable(err error) error {
	if err == nil {
		return nil // the common case, before anything escapes to the heap
	}
	var pe perrors.ProtocolError
	if !errors.As(err, &pe) || pe.TypeId() != perrors.InvalidData ||
		!strings.Contains(pe.Error(), "larger than the limit") {
		return err
	}
	return remote.NewTransErrorWithMsg(TypeTooLarge,
		fmt.Sprintf("request is over the server's limit of %d bytes (server.max_request_bytes): %v", c.maxBytes, err))
}

// IsTooLarge reports whether err, as returned by a Kitex client call, is a server's refusal of
// an oversized request.
func IsTooLarge(err error) bool {
	var te *remote.TransError
	return errors.As(err, &te) && te.TypeID() == TypeTooLarge
}
