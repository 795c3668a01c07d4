package kvclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/cloudwego/gopkg/bufiox"
	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/endpoint"
	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/kitex/pkg/remote/trans/gonet"
	kitexnetpoll "github.com/cloudwego/kitex/pkg/remote/trans/netpoll"

	"github.com/putallkv/putallkv/pkg/auth"
)

// WithToken makes every call carry token (see `putallctl token`), in TTHeader metadata, unless
// the call's context carries one of its own (auth.ContextWithToken: how a gateway tier passes
// on each HTTP caller's token). A server with a token file refuses a call without a valid
// token (ErrUnauthenticated) and a call whose token's role is too low (ErrPermissionDenied).
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithTLS makes the client speak TLS to the servers, configured by cfg (RootCAs to verify
// the servers, Certificates for a server that asks for a client certificate; ServerName is
// taken from each address when cfg leaves it empty). TLS runs over Kitex's Go-net transport
// instead of netpoll; docs/performance.md, Tokens and TLS, says what it costs.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// secureOptions are the Kitex options that WithToken and WithTLS need (besides the dialer).
func (o *options) secureOptions() []client.Option {
	var opts []client.Option
	if o.token != "" {
		opts = append(opts, client.WithMiddleware(sendToken(o.token)))
	}
	if o.tls != nil {
		opts = append(opts, client.WithTransHandlerFactory(gonet.NewCliTransHandlerFactory()))
	}
	return opts
}

// dialer is the TLS dialer when WithTLS is given, else netpoll's (saying why a dial failed).
func (o *options) dialer() remote.Dialer {
	if o.tls != nil {
		return tlsDialer{cfg: o.tls}
	}
	return causeDialer{kitexnetpoll.NewDialer()}
}

// sendToken is a Kitex client middleware that puts token in a call's metadata unless the
// call's context has one.
func sendToken(token string) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req, resp any) error {
			if _, ok := auth.TokenFromContext(ctx); !ok {
				ctx = auth.ContextWithToken(ctx, token)
			}
			return next(ctx, req, resp)
		}
	}
}

// tlsDialer dials TLS connections for Kitex's Go-net transport.
type tlsDialer struct {
	cfg *tls.Config
}

// DialTimeout implements remote.Dialer: it connects and completes the handshake within
// timeout.
func (d tlsDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := d.cfg
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	raw, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	return &tlsConn{Conn: conn, raw: raw, r: bufiox.NewDefaultReader(conn), w: bufiox.NewDefaultWriter(conn)}, nil
}

// tlsConn is a client TLS connection as Kitex's Go-net transport wants one: buffered
// reading and writing (its Reader and Writer), and IsActive for the pool.
type tlsConn struct {
	net.Conn          // the *tls.Conn
	raw      net.Conn // the TCP connection beneath it
	r        *bufiox.DefaultReader
	w        *bufiox.DefaultWriter
}

var _ remote.IsActive = (*tlsConn)(nil)

// Reader returns the buffered reader Kitex decodes from.
func (c *tlsConn) Reader() *bufiox.DefaultReader { return c.r }

// Writer returns the buffered writer Kitex encodes into.
func (c *tlsConn) Writer() *bufiox.DefaultWriter { return c.w }

// Read reads through the buffer, so nothing buffered is skipped.
func (c *tlsConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Close closes the TCP connection. It may be called while another goroutine reads (a call
// ended by its deadline, see cancellingPool): the read fails and the buffers are left to the
// garbage collector rather than released under it.
func (c *tlsConn) Close() error { return c.raw.Close() }

// IsActive reports whether a pooled connection can carry a call: nothing has arrived on it
// between calls (a server's close_notify or FIN) and the socket is open. It peeks at the
// socket without blocking and without consuming anything.
func (c *tlsConn) IsActive() bool {
	if c.r.Buffered() > 0 {
		return false
	}
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	active := false
	err = rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		active = errors.Is(err, syscall.EAGAIN)
	})
	return err == nil && active
}
