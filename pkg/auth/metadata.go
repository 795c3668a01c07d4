package auth

import (
	"context"
	"strings"

	"github.com/bytedance/gopkg/cloud/metainfo"
)

// metaKey is the Kitex metadata key of a call's token. Like the trace id (package traceid)
// it travels as a transient metainfo value, which Kitex sends only over TTHeader and only one
// hop: a server that calls another service does not pass its caller's token on by accident.
const metaKey = "PUTALLKV_TOKEN"

// ContextWithToken returns ctx carrying token for the calls made with it: the Go SDK sends it
// to the server in TTHeader.
func ContextWithToken(ctx context.Context, token string) context.Context {
	return metainfo.WithValue(ctx, metaKey, token)
}

// TokenFromContext returns the token ctx carries: on a server, the one the caller sent.
func TokenFromContext(ctx context.Context) (string, bool) {
	return metainfo.GetValue(ctx, metaKey)
}

// BearerToken returns the token of an HTTP Authorization header value "Bearer TOKEN" (the
// scheme in any case, RFC 6750), or "" when the value is of another form.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
