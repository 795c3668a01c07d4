package metrics

import (
	"bufio"
	"github.com/putallkv/putallkv/internal/testnet"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startAdmin(t *testing.T, limits AdminLimits, routes ...Route) string {
	t.Helper()
	a, err := StartAdmin("127.0.0.1:0", NewRegistry(), discardLogger(), limits, Routes(routes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testnet.Stop(t, a) })
	return a.Addr().String()
}

// TestAdminCommandDeadline: a command that never returns (a snapshot on a stuck disk) is
// answered 503 problem+json at admin.request_timeout, and its context is cancelled.
func TestAdminCommandDeadline(t *testing.T) {
	cancelled := make(chan struct{})
	hang := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(cancelled)
	})
	addr := startAdmin(t, AdminLimits{RequestTimeout: 100 * time.Millisecond}, Route{Pattern: "POST /admin/hang", Handler: hang})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Post("http://"+addr+"/admin/hang", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(body.String(), `"code":"UNAVAILABLE"`) {
		t.Fatalf("%d %q %s; want 503 UNAVAILABLE problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), body.String())
	}
	<-cancelled
}

// TestAdminConnectionCap: connections over admin.max_connections are answered 503 and closed;
// the ones within it are served.
func TestAdminConnectionCap(t *testing.T) {
	addr := startAdmin(t, AdminLimits{MaxConnections: 2})
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c, bufio.NewReader(c)
	}
	get := func(c net.Conn, r *bufio.Reader) int {
		if _, err := c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	c1, r1 := dial()
	c2, r2 := dial()
	if get(c1, r1) != 200 || get(c2, r2) != 200 {
		t.Fatal("connections within the cap were not served")
	}
	c3, r3 := dial()
	resp, err := http.ReadResponse(r3, nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("a connection over the cap: %v, %v; want 503", resp, err)
	}
	_ = resp.Body.Close()
	_ = c3
}
