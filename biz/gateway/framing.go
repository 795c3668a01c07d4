package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/putallkv/putallkv/pkg/traceid"
)

// Codes of the problems Hertz finds before any handler runs (see hertzErrors).
const (
	// codeHeadersTooLarge: the request's headers are over Hertz's bound (431).
	codeHeadersTooLarge = "HEADERS_TOO_LARGE"
	// codeRequestTimeout: the request did not arrive in time (408).
	codeRequestTimeout = "REQUEST_TIMEOUT"
)

// checkFraming refuses a request whose body length is ambiguous: Content-Length given twice
// with different values, or beside Transfer-Encoding. Hertz would pick one reading; a proxy
// in front may have picked the other, and the rest of the connection would then be read as a
// request the proxy never saw (request smuggling). The connection is closed after the answer,
// since where this request ends is unknown.
func checkFraming(c *app.RequestContext) error {
	var length []byte
	var transfer bool
	for line := range bytes.Lines(c.Request.Header.RawHeaders()) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length != nil && !bytes.Equal(length, value) {
				c.SetConnectionClose()
				return invalid("the request has two different Content-Length headers")
			}
			length = value
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			transfer = true
		}
	}
	if length != nil && transfer {
		c.SetConnectionClose()
		return invalid("the request has both Content-Length and Transfer-Encoding")
	}
	return nil
}

// hertzError is the whole response that replaces the one Hertz writes (in text/plain) when it
// refuses a request before any handler runs: a malformed request line or header, headers over
// maxHeaderBytes, a body length it cannot read. status is the status Hertz chose.
func (g *Gateway) hertzError(status int) []byte {
	e := invalid("the request is malformed: it is not HTTP/1.1 this gateway can read")
	switch status {
	case 413:
		e = tooLarge("the request is over the gateway's bound")
	case 431:
		e = &apiError{code: codeHeadersTooLarge, detail: fmt.Sprintf("the request's line and headers are over the gateway's bound of %d bytes", maxHeaderBytes)}
	case 408:
		e = &apiError{code: codeRequestTimeout, detail: "the request did not arrive in time"}
	}
	id := traceid.New()
	p := newProblem(e, id)
	body, _ := json.Marshal(p) // a problem always encodes
	g.metrics.observe(routeUnmatched, p.Status, 0)
	if g.access.logs(p.Status) {
		g.log.LogAttrs(context.Background(), slog.LevelInfo, "http request refused before routing",
			slog.Int("status", p.Status), slog.String("code", e.code), slog.String("request_id", id))
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n%s: %s\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", p.Status, http.StatusText(p.Status), headerTraceID, id, len(body), body)
}
