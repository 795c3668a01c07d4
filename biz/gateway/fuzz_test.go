package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// FuzzGatewayRequest sends any bytes as a request, request line, headers and body alike, to a
// running gateway over the real service. Whatever the bytes, the gateway either answers (and
// an error in problem+json with a code, never INTERNAL) or closes the connection within its
// time limits, and goes on serving. `go test` runs the seeds and testdata/fuzz; `go test -fuzz
// FuzzGatewayRequest ./biz/gateway` explores.
func FuzzGatewayRequest(f *testing.F) {
	for _, seed := range []string{
		"PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nv",
		"PUT /v1/kv/a?ttl_ms=100 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nIf-None-Match: *\r\nContent-Length: 1\r\n\r\nv",
		"GET /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"1\", W/\"2\"\r\n\r\n",
		"HEAD /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"DELETE /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Match: \"3\"\r\nIdempotency-Key: \"k\"\r\n\r\n",
		"POST /v1/kv:putAll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{\"entries\":[{\"key\":\"a\",\"value\":\"\\ud800\"}]}",
		"POST /v1/kv:getAll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n{\"keys\":[]}\r\n0\r\n\r\n",
		"POST /v1/kv:deleteAll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nOrigin: http://evil.example\r\nContent-Length: 2\r\n\r\n{}",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 9\r\n\r\nv",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nv\r\n0\r\n\r\n",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nv",
		"GET /v1/kv/a HTTP/1.1\r\nHost: evil.example\r\nRequest-Timeout: 1ms\r\n\r\n",
		"OPTIONS /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: null\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
		"GET /v1/kv/%zz HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
		"\x00\xff\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	const limit = 100 * time.Millisecond // a request that never completes is closed this soon
	e := startWith(f, newService(f), Options{Limits: Limits{MaxConnections: 256, IdleTimeout: limit, HeaderTimeout: limit,
		BodyTimeout: limit, RequestTimeout: time.Second}})
	f.Fuzz(func(t *testing.T, req []byte) {
		c := e.dial(t)
		if _, err := c.Write(req); err != nil {
			t.Skip("the gateway closed the connection before the request was sent")
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%q: no answer and no close within %s", req, waitBound)
			}
			return // closed without an answer: the request never completed
		}
		_ = resp.Body.Close()
		if resp.StatusCode == 500 {
			t.Fatalf("%q: 500", req)
		}
		if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%q: %d with Content-Type %q, not problem+json", req, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		h := e.dial(t)
		if r := roundTrip(t, h, bufio.NewReader(h), healthz); r.status != 200 {
			t.Fatalf("after %q the gateway answers /healthz %d", req, r.status)
		}
	})
}
