// Package testnet holds the network helpers the end-to-end tests (test/e2e) and the tests of
// the built binaries (test/binary) share: one HTTP request with a client of its own, and idle
// connections that fill a listener's cap.
package testnet

import (
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
