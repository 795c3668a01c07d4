package gateway

import (
	"context"
	"errors"
	"strings"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/common/config"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/auth"
)

// routeRoles are the roles of the routes that do not follow the rule of roleOf.
var routeRoles = map[string]auth.Role{
	routeGetAll:  auth.Read,
	routeHealthz: auth.None,
	routeReadyz:  auth.None,
	routeOptions: auth.None, // a CORS preflight never carries credentials
}

// roleOf returns the role a request of route needs: a read for the routes that only read
// (GET and HEAD, and getAll), none for the health checks, write for every other.
func roleOf(route string) auth.Role {
	if r, ok := routeRoles[route]; ok {
		return r
	}
	if strings.HasPrefix(route, "GET ") || strings.HasPrefix(route, "HEAD ") {
		return auth.Read
	}
	return auth.Write
}

// authorize checks the request's bearer token (Authorization: Bearer TOKEN) for route
// against Options.Auth, and returns ctx carrying the token: a gateway tier's SDK passes it on
// to the RPC servers, which check it too. A refusal is UNAUTHENTICATED (401, with
// WWW-Authenticate) or PERMISSION_DENIED (403).
func (g *Gateway) authorize(ctx context.Context, c *app.RequestContext, route string) (context.Context, error) {
	token := auth.BearerToken(string(c.Request.Header.Peek("Authorization")))
	if token != "" {
		ctx = auth.ContextWithToken(ctx, token)
	}
	_, err := g.auth.Authorize(token, roleOf(route))
	switch {
	case err == nil:
		return ctx, nil
	case errors.Is(err, auth.ErrPermissionDenied):
		return ctx, &apiError{code: kv.ErrorCode_PERMISSION_DENIED.String(), detail: err.Error()}
	}
	return ctx, &apiError{code: kv.ErrorCode_UNAUTHENTICATED.String(),
		detail: err.Error() + " (send Authorization: Bearer TOKEN)"}
}

// challenge sets WWW-Authenticate on a 401, which RFC 9110 requires: whether the gateway
// refused the request or, in a tier, the RPC server did.
func challenge(c *app.RequestContext, e *apiError) {
	if e.code != kv.ErrorCode_UNAUTHENTICATED.String() {
		return
	}
	v := `Bearer realm="putallkv"`
	if len(c.Request.Header.Peek("Authorization")) > 0 {
		v += `, error="invalid_token"`
	}
	c.Response.Header.Set("WWW-Authenticate", v)
}

// tlsOption sets Options.TLS as the configuration Hertz serves with (nil: plain HTTP); the
// gateway's Go-net transport (see conns) serves TLS when it is set.
func (g *Gateway) tlsOption() config.Option {
	return config.Option{F: func(o *config.Options) { o.TLS = g.tls }}
}
