package kvclient

import (
	"errors"
	"net"
	"time"

	"github.com/cloudwego/kitex/pkg/remote"
	"github.com/cloudwego/netpoll"
)

// causeDialer is Kitex's netpoll dialer, made to say why a connection could not be made.
//
// netpoll reports every failed connect as "connection has been closed by peer": it sees the
// socket hang up before it reads the socket's error, so "nothing listens there" reads as if a
// server had accepted and then dropped the connection. After such a failure causeDialer
// connects once more with the standard library, which reads that error, and returns it
// ("connect: connection refused", "connect: no route to host"), so errors.Is(err,
// syscall.ECONNREFUSED) holds too. The second attempt is made only after a failure: a dial
// that succeeds costs nothing more.
type causeDialer struct {
	remote.Dialer
}

// DialTimeout dials address as the netpoll dialer does; see causeDialer for a failure.
func (d causeDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	start := time.Now()
	conn, err := d.Dialer.DialTimeout(network, address, timeout)
	if err == nil || !errors.Is(err, netpoll.ErrConnClosed) {
		return conn, err
	}
	left := timeout - time.Since(start)
	if timeout > 0 && left <= 0 {
		return nil, err
	}
	probe, perr := (&net.Dialer{Timeout: max(left, 0)}).Dial(network, address)
	if perr != nil {
		return nil, perr
	}
	// It answers now: the first failure stands, and the caller's retry will find it.
	_ = probe.Close()
	return nil, err
}
