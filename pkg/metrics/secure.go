package metrics

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"

	"github.com/putallkv/putallkv/pkg/auth"
)

// AdminOption configures StartAdmin: a Route to add, the AdminSecurity to serve with, or the
// AdminLimits.
type AdminOption interface {
	applyAdmin(*adminSetup)
}

// adminSetup is what the AdminOptions of a StartAdmin call add up to.
type adminSetup struct {
	routes   []Route
	security AdminSecurity
	limits   AdminLimits
}

func (r Route) applyAdmin(s *adminSetup) { s.routes = append(s.routes, r) }

// Routes adds several routes at once.
type Routes []Route

func (rs Routes) applyAdmin(s *adminSetup) { s.routes = append(s.routes, rs...) }

// AdminSecurity guards the admin server: tokens and TLS. The zero value guards nothing.
type AdminSecurity struct {
	// Auth, when set, lets a request through only with a bearer token (Authorization:
	// Bearer TOKEN) of the admin role: pprof, the command line and the admin commands are
	// an operator's. /healthz and /readyz stay open; /metrics needs the read role unless
	// MetricsOpen.
	Auth *auth.Authenticator
	// MetricsOpen serves /metrics without a token, for a scraper that sends none.
	MetricsOpen bool
	// TLS, when set, makes the admin server serve HTTPS only.
	TLS *tls.Config
}

func (s AdminSecurity) applyAdmin(a *adminSetup) { a.security = s }

// roleOf returns the role a request for path needs.
func (s AdminSecurity) roleOf(path string) auth.Role {
	switch path {
	case "/healthz", "/readyz":
		return auth.None
	case "/metrics":
		if s.MetricsOpen {
			return auth.None
		}
		return auth.Read
	}
	return auth.Admin
}

// handler wraps h with the token check.
func (s AdminSecurity) handler(h http.Handler) http.Handler {
	if s.Auth == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := auth.BearerToken(r.Header.Get("Authorization"))
		_, err := s.Auth.Authorize(token, s.roleOf(r.URL.Path))
		switch {
		case err == nil:
			h.ServeHTTP(w, r)
		case errors.Is(err, auth.ErrPermissionDenied):
			http.Error(w, "PERMISSION_DENIED: "+err.Error(), http.StatusForbidden)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="putallkv-admin"`)
			http.Error(w, "UNAUTHENTICATED: "+err.Error()+" (send Authorization: Bearer TOKEN)", http.StatusUnauthorized)
		}
	})
}

// listener wraps ln with TLS when it is configured.
func (s AdminSecurity) listener(ln net.Listener) net.Listener {
	if s.TLS == nil {
		return ln
	}
	return tls.NewListener(ln, s.TLS)
}
