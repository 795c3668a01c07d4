// Package testnet holds the network helpers tests share (test/e2e, test/binary, the SDK's
// tests): one HTTP request with a client of its own, idle connections that fill a listener's
// cap, an address where nothing listens, and a server's graceful stop when a test ends.
package testnet

import (
	"context"
	"crypto/tls"
	"github.com/putallkv/putallkv/pkg/tlsconf"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Do sends one request (a POST as JSON) with a client whose connections are closed afterwards,
// so that no keep-alive goroutine outlives it, and returns the status, headers and body.
func Do(t testing.TB, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	return DoRequest(t, req)
}

// DoRequest sends req as Do sends its request, for a test that sets headers of its own.
func DoRequest(t testing.TB, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// Get is a GET with Do that fails the test unless it is answered 200, and returns the body.
func Get(t testing.TB, url string) string {
	t.Helper()
	code, _, body := Do(t, "GET", url, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return string(body)
}

// Hold opens n connections to addr and keeps them open, idle, until the test ends.
func Hold(t testing.TB, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection to %s: %v", addr, err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
}

// DeadAddr returns a loopback address where nothing listens (a port just freed): a dead node.
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// Stop shuts a server down gracefully within 10 s, failing t if that fails; tests defer it
// with t.Cleanup.
func Stop(t testing.TB, s interface{ Shutdown(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// BaseURL is the base URL of a server on addr: https when it serves TLS.
func BaseURL(addr net.Addr, tls bool) string {
	if tls {
		return "https://" + addr.String()
	}
	return "http://" + addr.String()
}

// Client is an HTTP client with connections of its own (closed when t ends) and a 30 s
// bound on each request; cfg, when not nil, is its TLS configuration.
func Client(t testing.TB, cfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TLSClient is Client with the TLS configuration files make (a CA, and a client certificate
// for mutual TLS).
func TLSClient(t testing.TB, files tlsconf.Files) *http.Client {
	t.Helper()
	cfg, err := tlsconf.Client(files)
	if err != nil {
		t.Fatal(err)
	}
	return Client(t, cfg)
}

// Status sends method url with no body through client, with token as a bearer token ("" for
// none), and returns the response's status.
func Status(t testing.TB, client *http.Client, method, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
