package gateway

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/protocol"

	"github.com/putallkv/putallkv/pkg/traceid"
)

// Header names the gateway reads or writes.
const (
	headerTraceID     = "X-Request-ID"
	headerIdemKey     = "Idempotency-Key"
	headerReplayed    = "Idempotent-Replayed"
	headerIfMatch     = "If-Match"
	headerIfNoneMatch = "If-None-Match"
)

// keyPrefix is the path prefix of the single-key routes; the rest of the path is the key.
const keyPrefix = "/v1/kv/"

// traceID returns the trace id the caller sent in X-Request-ID if it is usable (1 to
// traceid.MaxLen visible ASCII characters, so it is safe to log), else fallback (the request
// span's trace id, so that logs and traces share one id), else a fresh one.
func traceID(h *protocol.RequestHeader, fallback string) string {
	id := h.Peek(headerTraceID)
	if len(id) == 0 || len(id) > traceid.MaxLen {
		return orNew(fallback)
	}
	for _, b := range id {
		if b < 0x21 || b > 0x7e {
			return orNew(fallback)
		}
	}
	return string(id)
}

// orNew returns id, or a fresh trace id when id is "".
func orNew(id string) string {
	if id == "" {
		return traceid.New()
	}
	return id
}

// idempotencyKey reads Idempotency-Key, which the IETF draft makes a structured-field string
// ("key", quoted); a bare token is accepted too. nil means the request has none.
func idempotencyKey(h *protocol.RequestHeader) (*string, error) {
	v := strings.TrimSpace(string(h.Peek(headerIdemKey)))
	if v == "" {
		return nil, nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		if v == "" || strings.ContainsAny(v, `"\`) {
			return nil, invalid("Idempotency-Key must be a non-empty string without quotes or backslashes")
		}
	}
	return &v, nil
}

// pathKey is the key of a single-key route: the request path after /v1/kv/, exactly as sent
// (never cleaned: "a//b" and "a/../b" are keys like any other), percent-decoded as a path ('+'
// stays '+').
func pathKey(c *app.RequestContext) (string, error) {
	raw := strings.TrimPrefix(string(c.Request.URI().PathOriginal()), keyPrefix)
	key, err := url.PathUnescape(raw)
	if err != nil {
		return "", invalid("the key in the path is not valid percent-encoding: %v", err)
	}
	return key, nil
}

// checkQuery refuses query parameters the route does not define, so a misspelt one (ttl for
// ttl_ms) is an error rather than silently ignored.
func checkQuery(c *app.RequestContext, allowed ...string) error {
	var err error
	c.Request.URI().QueryArgs().VisitAll(func(k, _ []byte) {
		if err == nil && !slices.Contains(allowed, string(k)) {
			err = invalid("unknown query parameter %q", k)
		}
	})
	return err
}

// ttlParam reads ?ttl_ms=, a decimal integer; nil when absent. Its range is the service's to
// check.
func ttlParam(c *app.RequestContext) (*int64, error) {
	v, ok := c.Request.URI().QueryArgs().PeekExists("ttl_ms")
	if !ok {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, invalid("ttl_ms must be an integer number of milliseconds, got %q", v)
	}
	return &n, nil
}

// formatETag is a version as a strong entity tag: "42".
func formatETag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}

// entityTag is one parsed entity tag. version is -1 for a tag this gateway never issues (not a
// positive decimal), which therefore matches nothing.
type entityTag struct {
	version int64
	weak    bool
}

// parseETags parses an If-Match or If-None-Match value: "*" (star is true) or a comma-separated
// list of entity tags, each "opaque" or W/"opaque".
func parseETags(header, v string) (star bool, tags []entityTag, err error) {
	malformed := invalid(`%s must be * or a list of entity tags such as "42"`, header)
	v = strings.TrimSpace(v)
	if v == "*" {
		return true, nil, nil
	}
	for {
		var t entityTag
		if t.weak = strings.HasPrefix(v, "W/"); t.weak {
			v = v[2:]
		}
		end := -1
		if strings.HasPrefix(v, `"`) {
			end = strings.IndexByte(v[1:], '"')
		}
		if end < 0 {
			return false, nil, malformed
		}
		t.version = tagVersion(v[1 : 1+end])
		tags = append(tags, t)
		v = strings.TrimLeft(v[end+2:], " \t")
		if v == "" {
			return false, tags, nil
		}
		if v[0] != ',' {
			return false, nil, malformed
		}
		v = strings.TrimLeft(v[1:], " \t")
	}
}

// tagVersion is the version an entity tag's opaque part names, or -1.
func tagVersion(opaque string) int64 {
	if opaque == "" || strings.Trim(opaque, "0123456789") != "" {
		return -1
	}
	n, err := strconv.ParseInt(opaque, 10, 64)
	if err != nil || n <= 0 {
		return -1
	}
	return n
}

// ifMatch turns If-Match into an expected version: nil when absent. It takes exactly one strong
// tag naming a version; * (any existing version) has no equivalent in the API.
func ifMatch(h *protocol.RequestHeader) (*int64, error) {
	v := h.Peek(headerIfMatch)
	if len(v) == 0 {
		return nil, nil
	}
	star, tags, err := parseETags(headerIfMatch, string(v))
	switch {
	case err != nil:
		return nil, err
	case star:
		return nil, invalid(`If-Match: * is not supported; send the version to compare with, as in If-Match: "42"`)
	case len(tags) != 1 || tags[0].weak || tags[0].version < 0:
		return nil, invalid(`If-Match must be one strong entity tag naming a version, as in If-Match: "42" (versions start at 1)`)
	}
	return &tags[0].version, nil
}

// putPrecondition is a PUT's expected version: from If-Match (compare-and-set) or from
// If-None-Match: * (0, create-only); nil when it has neither.
func putPrecondition(h *protocol.RequestHeader) (*int64, error) {
	inm := h.Peek(headerIfNoneMatch)
	if len(inm) == 0 {
		return ifMatch(h)
	}
	if len(h.Peek(headerIfMatch)) > 0 {
		return nil, invalid("send If-Match or If-None-Match, not both")
	}
	if strings.TrimSpace(string(inm)) != "*" {
		return nil, invalid("on PUT, If-None-Match takes only * (create-only)")
	}
	var createOnly int64
	return &createOnly, nil
}

// deletePrecondition is a DELETE's expected version, from If-Match; nil when absent.
func deletePrecondition(h *protocol.RequestHeader) (*int64, error) {
	if len(h.Peek(headerIfNoneMatch)) > 0 {
		return nil, invalid("DELETE takes If-Match, not If-None-Match")
	}
	return ifMatch(h)
}

// notModified returns a GET's If-None-Match test: whether a key at a version is unchanged for
// the caller (weak comparison, as RFC 9110 asks for If-None-Match). Without the header nothing
// is unchanged.
func notModified(h *protocol.RequestHeader) (func(version int64) bool, error) {
	if len(h.Peek(headerIfMatch)) > 0 {
		return nil, invalid("GET takes If-None-Match, not If-Match")
	}
	v := h.Peek(headerIfNoneMatch)
	if len(v) == 0 {
		return func(int64) bool { return false }, nil
	}
	star, tags, err := parseETags(headerIfNoneMatch, string(v))
	if err != nil {
		return nil, err
	}
	return func(version int64) bool {
		if star {
			return true
		}
		for _, t := range tags {
			if t.version == version {
				return true
			}
		}
		return false
	}, nil
}

// allowedMethods is the Allow header for path: the methods of the route it names, or "" if it
// names none.
func (g *Gateway) allowedMethods(path string) string {
	op, _ := strings.CutPrefix(path, "/v1/")
	op, _ = url.PathUnescape(op)
	switch {
	case strings.HasPrefix(path, keyPrefix):
		return "GET, HEAD, PUT, DELETE"
	case g.ops[op] != nil:
		return "POST"
	case path == "/healthz" || path == "/readyz":
		return "GET, HEAD"
	case path == "/v1/kv":
		return "GET"
	}
	return ""
}
