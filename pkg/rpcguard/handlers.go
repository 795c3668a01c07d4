package rpcguard

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/netpoll"
	"golang.org/x/time/rate"
)

// HandlerOptions configure Handlers.
type HandlerOptions struct {
	// DrainTimeout bounds how long the body of an oversized request is read and discarded
	// after its refusal was answered; past it the connection is closed anyway.
	DrainTimeout time.Duration
	// Logger receives the refused requests, at most about one line a second (Warn).
	Logger *slog.Logger
}

// Handlers wraps the server transport handlers that inner makes (Kitex's netpoll one) so that
// an oversized request's body is drained after its refusal and refused requests are logged
// at a bounded rate. The refusals are Codec's.
func Handlers(inner remote.ServerTransHandlerFactory, o HandlerOptions) remote.ServerTransHandlerFactory {
	return &factory{inner: inner, opts: o, log: &refusalLog{log: o.Logger, limit: rate.NewLimiter(rate.Every(time.Second), 1)}}
}

type factory struct {
	inner remote.ServerTransHandlerFactory
	opts  HandlerOptions
	log   *refusalLog
}

// NewTransHandler implements remote.ServerTransHandlerFactory.
func (f *factory) NewTransHandler(opt *remote.ServerOption) (remote.ServerTransHandler, error) {
	h, err := f.inner.NewTransHandler(opt)
	if err != nil {
		return nil, err
	}
	return &transHandler{ServerTransHandler: h, drainTimeout: f.opts.DrainTimeout, log: f.log}, nil
}

type transHandler struct {
	remote.ServerTransHandler
	drainTimeout time.Duration
	log          *refusalLog
}

// OnRead implements remote.ServerTransHandler. When the request was refused as oversized,
// the refusal has been written; the rest of the request is then read and discarded, so that
// closing the connection does not reset it under the caller (a reset discards the answer
// the caller has not read yet).
func (h *transHandler) OnRead(ctx context.Context, conn net.Conn) error {
	err := h.ServerTransHandler.OnRead(ctx, conn)
	var r *refusal
	if err != nil && errors.As(err, &r) && r.unread > 0 {
		if drained := drain(conn, r.unread, time.Now().Add(h.drainTimeout)); drained < r.unread {
			r.detail += "; the connection was closed before the rest of the request arrived"
		}
	}
	return err
}

// OnError implements remote.ServerTransHandler: a refused request is logged at a bounded
// rate (the client's fault, not the server's), anything else as Kitex does.
func (h *transHandler) OnError(ctx context.Context, err error, conn net.Conn) {
	var r *refusal
	if !errors.As(err, &r) {
		h.ServerTransHandler.OnError(ctx, err, conn)
		return
	}
	h.log.add(conn, r)
}

// SetInvokeHandleFunc passes the server's endpoint on to the wrapped handler.
func (h *transHandler) SetInvokeHandleFunc(f endpoint.Endpoint) {
	if s, ok := h.ServerTransHandler.(remote.InvokeHandleFuncSetter); ok {
		s.SetInvokeHandleFunc(f)
	}
}

// GracefulShutdown shuts the wrapped handler down gracefully.
func (h *transHandler) GracefulShutdown(ctx context.Context) error {
	if g, ok := h.ServerTransHandler.(remote.GracefulShutdown); ok {
		return g.GracefulShutdown(ctx)
	}
	return nil
}

// drain reads and discards up to n bytes from conn, releasing them as it goes (never holding
// more than what arrived since the last read), until deadline. It returns how many it read.
func drain(conn net.Conn, n int, deadline time.Time) int {
	c, ok := conn.(netpoll.Connection)
	if !ok {
		return 0
	}
	r := c.Reader()
	done := 0
	for done < n {
		if r.Len() == 0 {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			_ = c.SetReadTimeout(left)
			if _, err := r.Peek(1); err != nil { // waits for the next bytes
				break
			}
		}
		k := min(r.Len(), n-done)
		if r.Skip(k) != nil {
			break
		}
		_ = r.Release()
		done += k
	}
	return done
}

// refusalLog logs refused requests, one line at most per tick of its limiter, each with the
// number of refusals left unlogged since the line before.
type refusalLog struct {
	log    *slog.Logger
	limit  *rate.Limiter
	missed atomic.Int64
}

func (l *refusalLog) add(conn net.Conn, r *refusal) {
	if !l.limit.Allow() {
		l.missed.Add(1)
		return
	}
	attrs := []any{"refusal", r.msg}
	if conn != nil && conn.RemoteAddr() != nil {
		attrs = append(attrs, "remote", conn.RemoteAddr().String())
	}
	if r.method != "" {
		attrs = append(attrs, "method", r.method)
	}
	if r.detail != "" {
		attrs = append(attrs, "detail", r.detail)
	}
	l.log.Warn("rpc request refused", append(attrs, "unlogged_before", l.missed.Swap(0))...)
}
