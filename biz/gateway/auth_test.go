package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudwego/kitex/server"

	"github.com/putallkv/putallkv/handler"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/auth/authtest"
	"github.com/putallkv/putallkv/pkg/tlsconf"
	"github.com/putallkv/putallkv/pkg/tlsconf/tlstest"
)

// startGateway runs a gateway over svc with opts (on loopback, quiet) and returns its base
// URL; it stops when t ends.
func startGateway(t *testing.T, svc kv.KVService, opts Options) string {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	g := New(svc, opts)
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testnet.Stop(t, g) })
	return testnet.BaseURL(g.Addr(), opts.TLS != nil)
}

// authCall is one request of every route, and the role it needs.
type authCall struct {
	method, path, body string
	need               string // "", read or write
	ok                 int    // the status with a token of that role
}

var authCalls = []authCall{
	{"PUT", "/v1/kv/k", "v", "write", 200},
	{"GET", "/v1/kv/k", "", "read", 200},
	{"DELETE", "/v1/kv/k", "", "write", 204},
	{"POST", "/v1/kv:putAll", `{"entries":[{"key":"k","value":"v"}]}`, "write", 200},
	{"POST", "/v1/kv:getAll", `{"keys":["k"]}`, "read", 200},
	{"POST", "/v1/kv:deleteAll", `{"entries":[{"key":"k"}]}`, "write", 200},
	{"GET", "/healthz", "", "", 200},
	{"GET", "/readyz", "", "", 200},
}

// call makes c with token ("" for none) and returns the status, the problem's code if the
// answer is a problem, and the headers.
func call(t *testing.T, client *http.Client, base string, c authCall, token string) (int, string, http.Header) {
	t.Helper()
	var headers []string
	if token != "" {
		headers = []string{"Authorization", "Bearer " + token}
	}
	resp := send(t, client, base, c.method, c.path, c.body, headers...)
	var p problem
	if strings.HasPrefix(resp.header.Get("Content-Type"), "application/problem+json") {
		if err := json.Unmarshal(resp.body, &p); err != nil {
			t.Fatal(err)
		}
	}
	return resp.status, p.Code, resp.header
}

// TestAuthOnEveryRoute checks every route with no token, an unknown token, a token of a
// role too low and one of the role it needs: in one process (the gateway checks) and as a
// tier in front of an RPC server (the gateway checks nothing; the server checks the token
// the gateway passes on).
func TestAuthOnEveryRoute(t *testing.T) {
	tk := authtest.New(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	deployments := []struct {
		name string
		svc  func(t *testing.T) kv.KVService
		opts Options
	}{
		{"in-process", func(t *testing.T) kv.KVService { return handler.New(newService(t), quiet) },
			Options{Auth: tk.Authenticator(t)}},
		{"tier", func(t *testing.T) kv.KVService {
			return startRPCWith(t, handler.New(newService(t), quiet),
				server.WithMiddleware(handler.Authorize(tk.Authenticator(t), quiet)))
		}, Options{}},
	}
	tokens := map[string]string{"read": tk.Read, "write": tk.Write, "admin": tk.Admin}
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			base := startGateway(t, d.svc(t), d.opts)
			client := newClient(t)
			put := authCalls[0]
			for _, c := range authCalls {
				if c.need == "" {
					if status, _, _ := call(t, client, base, c, ""); status != c.ok {
						t.Errorf("%s %s without a token: %d; want %d (open)", c.method, c.path, status, c.ok)
					}
					continue
				}
				status, code, h := call(t, client, base, c, "")
				if status != 401 || code != "UNAUTHENTICATED" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s without a token: %d %s %q", c.method, c.path, status, code, h.Get("WWW-Authenticate"))
				}
				if status, code, h := call(t, client, base, c, "pkv_not-a-token"); status != 401 || code != "UNAUTHENTICATED" ||
					!strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("%s %s with an unknown token: %d %s %q", c.method, c.path, status, code, h.Get("WWW-Authenticate"))
				}
				if c.need == "write" {
					if status, code, _ := call(t, client, base, c, tk.Read); status != 403 || code != "PERMISSION_DENIED" {
						t.Errorf("%s %s with a read token: %d %s", c.method, c.path, status, code)
					}
				}
				for _, role := range []string{c.need, "admin"} {
					call(t, client, base, put, tk.Write) // the key the call reads or deletes
					if status, code, _ := call(t, client, base, c, tokens[role]); status != c.ok {
						t.Errorf("%s %s with a %s token: %d %s; want %d", c.method, c.path, role, status, code, c.ok)
					}
				}
			}
		})
	}
}

// TestGatewayServesMutualTLS checks that a gateway with TLS serves a client with a
// certificate of the client CA, and refuses one without a certificate and plain HTTP.
func TestGatewayServesMutualTLS(t *testing.T) {
	pki := tlstest.New(t, "gateway")
	srv, err := tlsconf.NewServer(pki.Server)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := startGateway(t, handler.New(newService(t), quiet), Options{TLS: srv.Config()})
	put := authCalls[0]
	if status, _, _ := call(t, testnet.TLSClient(t, pki.Client), base, put, ""); status != 201 {
		t.Fatalf("PUT over mutual TLS: %d; want 201", status)
	}
	if resp, err := testnet.TLSClient(t, tlsconf.Files{CA: pki.CA}).Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s", resp.Status)
	}
	if resp, err := newClient(t).Get("http://" + strings.TrimPrefix(base, "https://") + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain HTTP to the TLS gateway got %s", resp.Status)
		}
	}
}
