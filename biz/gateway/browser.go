package gateway

import (
	"context"
	"mime"
	"net"
	"slices"
	"strings"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/protocol"
)

// What the gateway does so that a web page cannot use it through a browser on the same
// machine or network (cross-site request forgery, DNS rebinding):
//
//   - A body must say what it is: JSON routes take only application/json, the single-key PUT
//     only the raw-value types (putTypes). An HTML form or a "simple" cross-origin fetch can
//     send only form encodings and text/plain without a CORS preflight, so none of them can
//     write. Refused with 415.
//   - Host must name this gateway (Options.AllowedHosts): a page on a rebound DNS name reaches
//     the gateway with that name as Host. Refused with 421.
//   - A request from a browser page (it carries Origin) is refused with 403 unless its origin
//     is allowed (Options.AllowedOrigins), and only allowed origins get CORS headers, so no
//     page can read the answers.

// Codes of the browser checks' problems.
const (
	// codeUnsupportedMediaType: the body's Content-Type is not one the route takes (415).
	codeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	// codeMisdirected: Host names no name this gateway answers for (421).
	codeMisdirected = "MISDIRECTED_REQUEST"
	// codeOriginNotAllowed: a browser page of an origin not allowed sent the request (403).
	codeOriginNotAllowed = "ORIGIN_NOT_ALLOWED"
)

// bodyKind is what a route's body is.
type bodyKind uint8

const (
	noBody   bodyKind = iota // no body is read
	jsonBody                 // application/json
	rawBody                  // a raw value: putTypes
)

// putTypes are the media types the single-key PUT takes for its raw value (parameters such as
// charset are allowed); a PUT without Content-Type is taken as application/octet-stream.
var putTypes = []string{"application/octet-stream", "text/plain"}

// checkContentType refuses a body whose Content-Type is not one kind takes.
func checkContentType(h *protocol.RequestHeader, kind bodyKind) error {
	if kind == noBody {
		return nil
	}
	v := strings.TrimSpace(string(h.ContentType()))
	if v == "" && kind == rawBody {
		return nil
	}
	mt, _, err := mime.ParseMediaType(v)
	switch {
	case err == nil && kind == jsonBody && mt == "application/json":
		return nil
	case err == nil && kind == rawBody && slices.Contains(putTypes, mt):
		return nil
	case kind == jsonBody:
		return &apiError{code: codeUnsupportedMediaType, detail: "the body must be JSON, sent as Content-Type: application/json; got " + quoteOrNone(v)}
	}
	return &apiError{code: codeUnsupportedMediaType, detail: "a value is sent as Content-Type: application/octet-stream (or text/plain); got " + quoteOrNone(v)}
}

// quoteOrNone quotes a header value for a detail, or says there was none.
func quoteOrNone(v string) string {
	if v == "" {
		return "none"
	}
	return `"` + v + `"`
}

// hosts is the set of names (and addresses) Host may give; nil allows any.
type hosts map[string]bool

// newHosts is the allow-list of names: names as given (lower case, without ports), or, if
// names is empty, the loopback names and the host of the address the gateway listens on. "*"
// among names allows any Host.
func newHosts(names []string, bound net.Addr) hosts {
	if slices.Contains(names, "*") {
		return nil
	}
	h := hosts{}
	for _, n := range names {
		h[normalHost(n)] = true
	}
	if len(names) == 0 {
		for _, n := range []string{"localhost", "127.0.0.1", "::1"} {
			h[n] = true
		}
		if tcp, ok := bound.(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
			h[tcp.IP.String()] = true
		}
	}
	return h
}

// normalHost is a Host value's host without its port, lower case, IPv6 without brackets.
func normalHost(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if host, _, err := net.SplitHostPort(v); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
}

// check refuses a Host outside the allow-list.
func (h hosts) check(rh *protocol.RequestHeader) error {
	if h == nil {
		return nil
	}
	host := string(rh.Host())
	if h[normalHost(host)] {
		return nil
	}
	return &apiError{code: codeMisdirected, detail: "this gateway does not answer for the host " + quoteOrNone(host) +
		"; use a name in gateway.allowed_hosts"}
}

// corsRequestHeaders are the request headers an allowed origin's page may send.
const corsRequestHeaders = "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, Request-Timeout, X-Request-ID"

// corsExposedHeaders are the response headers an allowed origin's page may read.
const corsExposedHeaders = "ETag, Idempotent-Replayed, Retry-After, X-Request-ID"

// origins is the CORS allow-list: origins as browsers send them ("https://app.example:8443"),
// or "*" for any.
type origins []string

func (o origins) allows(origin string) bool {
	return slices.Contains(o, "*") || slices.Contains(o, origin)
}

// check lets a request without Origin (not from a browser page) through; one with Origin must
// come from an allowed origin, and is then given the CORS headers that let the page read the
// answer.
func (o origins) check(c *app.RequestContext) error {
	origin := string(c.Request.Header.Peek("Origin"))
	if origin == "" {
		return nil
	}
	if !o.allows(origin) {
		return &apiError{code: codeOriginNotAllowed, detail: "requests from pages of the origin " + quoteOrNone(origin) +
			" are not allowed; see gateway.cors_allowed_origins"}
	}
	c.Response.Header.Set("Access-Control-Allow-Origin", origin)
	c.Response.Header.Set("Access-Control-Expose-Headers", corsExposedHeaders)
	c.Response.Header.Add("Vary", "Origin")
	return nil
}

// preflight answers OPTIONS, registered only when some origin is allowed (without it, OPTIONS
// is 405 like any method a path does not take): 204 with Allow, and for a CORS preflight from
// an allowed origin (serve has refused the others), the methods of the path and the headers
// its pages may send.
func (g *Gateway) preflight(_ context.Context, c *app.RequestContext) error {
	allow := g.allowedMethods(string(c.Request.URI().PathOriginal()))
	if allow == "" {
		return &apiError{code: codeRouteNotFound, detail: "no route for this path; the API is under /v1/kv/ and /v1/kv:"}
	}
	c.Response.Header.Set("Allow", allow)
	if len(c.Request.Header.Peek("Origin")) > 0 {
		c.Response.Header.Set("Access-Control-Allow-Methods", allow)
		c.Response.Header.Set("Access-Control-Allow-Headers", corsRequestHeaders)
		c.Response.Header.Set("Access-Control-Max-Age", "600")
	}
	c.SetStatusCode(204)
	return nil
}
