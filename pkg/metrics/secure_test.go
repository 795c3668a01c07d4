package metrics

import (
	"net/http"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/pkg/auth/authtest"
	"github.com/putallkv/putallkv/pkg/tlsconf"
	"github.com/putallkv/putallkv/pkg/tlsconf/tlstest"
)

// startSecured starts an admin server with sec, a snapshot-like command and health routes,
// and returns its base URL; it stops when t ends.
func startSecured(t *testing.T, sec AdminSecurity) string {
	t.Helper()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	a, err := StartAdmin("127.0.0.1:0", NewRegistry(), discardLogger(), sec,
		Route{Pattern: "POST /admin/snapshot", Handler: ok},
		Route{Pattern: "GET /healthz", Handler: ok},
		Route{Pattern: "GET /readyz", Handler: ok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testnet.Stop(t, a) })
	return testnet.BaseURL(a.Addr(), sec.TLS != nil)
}

// TestAdminNeedsAdminRole checks every admin endpoint with no token, an unknown token,
// tokens below the role it needs and one of that role; and /metrics both ways of
// auth.metrics_open.
func TestAdminNeedsAdminRole(t *testing.T) {
	tk := authtest.New(t)
	a := tk.Authenticator(t)
	tokens := map[string]string{"read": tk.Read, "write": tk.Write, "admin": tk.Admin}
	endpoints := []struct {
		method, path string
		need         string // "" for open
	}{
		{"GET", "/debug/pprof/", "admin"},
		{"GET", "/debug/pprof/cmdline", "admin"},
		{"GET", "/debug/pprof/heap", "admin"},
		{"GET", "/debug/pprof/goroutine", "admin"},
		{"GET", "/debug/pprof/symbol", "admin"},
		{"GET", "/debug/pprof/profile?seconds=1", "admin"},
		{"GET", "/debug/pprof/trace?seconds=1", "admin"},
		{"POST", "/admin/snapshot", "admin"},
		{"GET", "/metrics", "read"},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/no/such/path", "admin"},
	}
	base := startSecured(t, AdminSecurity{Auth: a})
	client := testnet.Client(t, nil)
	for _, e := range endpoints {
		url := base + e.path
		want := http.StatusOK
		if e.path == "/no/such/path" {
			want = http.StatusNotFound
		}
		if e.need == "" {
			if got := testnet.Status(t, client, e.method, url, ""); got != want {
				t.Errorf("%s %s without a token: %d; want %d", e.method, e.path, got, want)
			}
			continue
		}
		if got := testnet.Status(t, client, e.method, url, ""); got != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d; want 401", e.method, e.path, got)
		}
		if got := testnet.Status(t, client, e.method, url, "pkv_unknown"); got != http.StatusUnauthorized {
			t.Errorf("%s %s with an unknown token: %d; want 401", e.method, e.path, got)
		}
		for role, token := range tokens {
			wantRole := want
			if e.need == "admin" && role != "admin" {
				wantRole = http.StatusForbidden
			}
			if strings.Contains(e.path, "seconds=") && wantRole == want && role != e.need {
				continue // a second each: the admin token's run is enough
			}
			if got := testnet.Status(t, client, e.method, url, token); got != wantRole {
				t.Errorf("%s %s with a %s token: %d; want %d", e.method, e.path, role, got, wantRole)
			}
		}
	}
	open := startSecured(t, AdminSecurity{Auth: a, MetricsOpen: true})
	if got := testnet.Status(t, client, "GET", open+"/metrics", ""); got != http.StatusOK {
		t.Errorf("/metrics with metrics_open, without a token: %d; want 200", got)
	}
	if got := testnet.Status(t, client, "GET", open+"/debug/pprof/cmdline", tk.Write); got != http.StatusForbidden {
		t.Errorf("/debug/pprof/cmdline with metrics_open and a write token: %d; want 403", got)
	}
}

// TestAdminServesMutualTLS checks that the admin server with TLS and a client CA serves a
// client with a certificate and refuses one without.
func TestAdminServesMutualTLS(t *testing.T) {
	pki := tlstest.New(t, "admin")
	srv, err := tlsconf.NewServer(pki.Server)
	if err != nil {
		t.Fatal(err)
	}
	base := startSecured(t, AdminSecurity{TLS: srv.Config()})
	if got := testnet.Status(t, testnet.TLSClient(t, pki.Client), "GET", base+"/metrics", ""); got != http.StatusOK {
		t.Fatalf("GET /metrics over mutual TLS: %d", got)
	}
	if resp, err := testnet.TLSClient(t, tlsconf.Files{CA: pki.CA}).Get(base + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s", resp.Status)
	}
}
