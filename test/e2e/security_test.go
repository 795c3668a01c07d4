package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/auth"
	"github.com/putallkv/putallkv/pkg/auth/authtest"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/tlsconf"
	"github.com/putallkv/putallkv/pkg/tlsconf/tlstest"
)

// rpcCalls calls every KVService method once through c, each on its own key, and returns the
// error of each by method name.
func rpcCalls(ctx context.Context, c *kvclient.Client) map[string]error {
	errs := map[string]error{}
	_, errs["Put"] = c.Put(ctx, &kv.PutRequest{Key: "p", Value: []byte("v")})
	_, errs["Get"] = c.Get(ctx, &kv.GetRequest{Key: "seed"})
	_, errs["Delete"] = c.Delete(ctx, &kv.DeleteRequest{Key: "d"})
	_, errs["PutAll"] = c.PutAll(ctx, &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "pa", Value: []byte("v")}}})
	_, errs["GetAll"] = c.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"seed"}})
	_, errs["DeleteAll"] = c.DeleteAll(ctx, &kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "da"}}})
	_, errs["PutAllMany"] = c.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{
		{Entries: []*kv.Entry{{Key: "pm", Value: []byte("v")}}}}})
	_, errs["Scan"] = c.Scan(ctx, &kv.ScanRequest{Prefix: "se"})
	errs["Load"] = loadOne(ctx, c, &kv.Entry{Key: "ld", Value: []byte("v")})
	return errs
}

// reads are the methods the read role may call.
var reads = map[string]bool{"Get": true, "GetAll": true, "Scan": true}

// seed writes the keys rpcCalls reads and deletes, with the admin token.
func seed(t *testing.T, c *kvclient.Client) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []string{"seed", "d", "da"} {
		if _, err := c.Put(ctx, &kv.PutRequest{Key: k, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2EAuthOnEveryRPCMethod checks each method without a token, with an unknown one, with
// a token of each role: UNAUTHENTICATED, PERMISSION_DENIED below the method's role, OK at
// or above it.
func TestE2EAuthOnEveryRPCMethod(t *testing.T) {
	tk := authtest.New(t)
	cfg := testConfig(t)
	cfg.Auth.TokenFile = tk.File
	a, anonymous := startTestServer(t, cfg)
	admin := newClient(t, a.RPCAddr(), kvclient.WithToken(tk.Admin))
	ctx := context.Background()
	clients := []struct {
		role string
		c    *kvclient.Client
	}{
		{"none", anonymous},
		{"unknown", newClient(t, a.RPCAddr(), kvclient.WithToken("pkv_unknown"))},
		{"read", newClient(t, a.RPCAddr(), kvclient.WithToken(tk.Read))},
		{"write", newClient(t, a.RPCAddr(), kvclient.WithToken(tk.Write))},
		{"admin", admin},
	}
	for _, cl := range clients {
		seed(t, admin)
		for method, err := range rpcCalls(ctx, cl.c) {
			var want error
			switch {
			case cl.role == "none" || cl.role == "unknown":
				want = kvclient.ErrUnauthenticated
			case cl.role == "read" && !reads[method]:
				want = kvclient.ErrPermissionDenied
			}
			if !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Errorf("%s with %s token: %v; want %v", method, cl.role, err, want)
			}
		}
	}
	// A token in the call's context wins over the client's (how a gateway tier passes on its
	// callers' tokens).
	coalescing := newClient(t, a.RPCAddr(), kvclient.WithToken(tk.Admin), kvclient.WithCoalescing(1))
	if _, err := coalescing.PutAll(auth.ContextWithToken(ctx, tk.Read), &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "x", Value: []byte("v")}}}); !errors.Is(err, kvclient.ErrPermissionDenied) {
		t.Errorf("PutAll with a read token in the context: %v; want PERMISSION_DENIED", err)
	}
}

// TestE2EAuthOnGatewayAndAdmin checks that the server's gateway and admin endpoint take
// the token file too: a write through the gateway and the snapshot command.
func TestE2EAuthOnGatewayAndAdmin(t *testing.T) {
	tk := authtest.New(t)
	cfg := testConfig(t)
	cfg.Auth.TokenFile = tk.File
	cfg.Auth.MetricsOpen = true
	a, _ := startTestServer(t, cfg)
	client := testnet.Client(t, nil)
	gw, admin := "http://"+a.GatewayAddr(), "http://"+a.AdminAddr()
	for _, tt := range []struct {
		method, url, token string
		want               int
	}{
		{"PUT", gw + "/v1/kv/k", "", 401},
		{"PUT", gw + "/v1/kv/k", tk.Read, 403},
		{"PUT", gw + "/v1/kv/k", tk.Write, 201},
		{"GET", gw + "/v1/kv/k", tk.Read, 200},
		{"GET", gw + "/v1/kv?prefix=k", "", 401},
		{"GET", gw + "/v1/kv?prefix=k", tk.Read, 200},
		{"GET", gw + "/healthz", "", 200},
		{"POST", admin + "/admin/snapshot", "", 401},
		{"POST", admin + "/admin/snapshot", tk.Write, 403},
		{"POST", admin + "/admin/snapshot", tk.Admin, 409}, // memory only: nothing to snapshot
		{"GET", admin + "/debug/pprof/cmdline", tk.Read, 403},
		{"GET", admin + "/debug/pprof/cmdline", tk.Admin, 200},
		{"GET", admin + "/metrics", "", 200}, // auth.metrics_open
	} {
		if got := testnet.Status(t, client, tt.method, tt.url, tt.token); got != tt.want {
			t.Errorf("%s %s: %d; want %d", tt.method, tt.url, got, tt.want)
		}
	}
}

// TestE2ETLSOnEveryListener serves RPC, the gateway and the admin endpoint over mutual TLS:
// a client with a certificate of the CA is served, one without is refused, a plain client
// gets nothing; and a graceful shutdown does not wait for a client's idle TLS connection.
func TestE2ETLSOnEveryListener(t *testing.T) {
	pki := tlstest.New(t, "e2e")
	cfg := testConfig(t)
	cfg.TLS = config.TLSConfig{CertFile: pki.Server.Cert, KeyFile: pki.Server.Key, ClientCAFile: pki.CA,
		RPC: true, Gateway: true, Admin: true}
	cfg.Server.ShutdownTimeout = time.Minute // a shutdown that waited for idle clients would show
	a, err := server.Start(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = a.Shutdown(ctx)
		}
	})
	plain := newClient(t, a.RPCAddr())
	withCert, err := tlsconf.Client(pki.Client)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := tlsconf.Client(tlsconf.Files{CA: pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := newClient(t, a.RPCAddr(), kvclient.WithTLS(withCert))
	for method, err := range rpcCalls(ctx, c) {
		if method == "Load" { // TTHeader streams run over netpoll only: refused before anything is sent
			if !errors.Is(err, kvclient.ErrInvalidArgument) {
				t.Errorf("Load over TLS: %v; want INVALID_ARGUMENT", err)
			}
			continue
		}
		if err != nil && !errors.Is(err, kvclient.ErrNotFound) {
			t.Errorf("%s over mutual TLS: %v", method, err)
		}
	}
	// The RPC port's request checks hold on the TLS transport too.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", a.RPCAddr(), withCert)
	if err != nil {
		t.Fatal(err)
	}
	r, err := rawExchange(conn, frame("GetAll", hugeContainers(methods[slices.IndexFunc(methods, func(m method) bool { return m.name == "GetAll" })])["list"]))
	wantRefusal(t, "GetAll declaring a huge list, over TLS", r, err, "declares 2147483647")
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := newClient(t, a.RPCAddr(), kvclient.WithTLS(noCert), kvclient.WithRetries(0)).Get(short, &kv.GetRequest{Key: "p"}); !errors.Is(err, kvclient.ErrUnavailable) {
		t.Errorf("RPC without a client certificate: %v; want UNAVAILABLE (refused)", err)
	}
	if _, err := plain.Get(short, &kv.GetRequest{Key: "p"}); !errors.Is(err, kvclient.ErrUnavailable) {
		t.Errorf("plain RPC to the TLS server: %v; want UNAVAILABLE", err)
	}
	for _, url := range []string{"https://" + a.GatewayAddr() + "/v1/kv/p", "https://" + a.AdminAddr() + "/metrics"} {
		for name, tc := range map[string]*tlsConfigCase{"with": {withCert, true}, "without": {noCert, false}} {
			tr := &http.Transport{TLSClientConfig: tc.cfg}
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
			if err == nil {
				resp.Body.Close()
			}
			tr.CloseIdleConnections()
			if (err == nil && resp.StatusCode == 200) != tc.served {
				t.Errorf("GET %s %s a client certificate: %v %v", url, name, resp, err)
			}
		}
	}
	// c keeps its TLS connection in the pool: the server's shutdown must close it rather than
	// wait for c to let it go.
	shutdownCtx, cancelShutdown := context.WithTimeout(ctx, 20*time.Second)
	defer cancelShutdown()
	stopped = true
	if err := a.Shutdown(shutdownCtx); err != nil {
		t.Fatalf("shutdown with a client's idle TLS connection open: %v", err)
	}
	if _, err := c.Get(short, &kv.GetRequest{Key: "p"}); !errors.Is(err, kvclient.ErrUnavailable) {
		t.Errorf("a call after shutdown: %v; want UNAVAILABLE", err)
	}
}

// tlsConfigCase is a client TLS configuration and whether the server should serve it.
type tlsConfigCase struct {
	cfg    *tls.Config
	served bool
}

// TestE2EGatewayTierPassesTokensOverTLS runs a gateway tier in front of a server that checks
// tokens and serves RPC over mutual TLS: the tier dials it with tls.upstream_ca_file and its
// certificate, and each HTTP caller's token decides what the server lets through.
func TestE2EGatewayTierPassesTokensOverTLS(t *testing.T) {
	tk, pki := authtest.New(t), tlstest.New(t, "tier")
	cfg := testConfig(t)
	cfg.Auth.TokenFile = tk.File
	cfg.TLS = config.TLSConfig{CertFile: pki.Server.Cert, KeyFile: pki.Server.Key, ClientCAFile: pki.CA, RPC: true}
	upstream, _ := startTestServer(t, cfg)

	tierCfg := testConfig(t)
	tierCfg.Gateway.Upstream = upstream.RPCAddr()
	tierCfg.TLS = config.TLSConfig{CertFile: pki.Client.Cert, KeyFile: pki.Client.Key, UpstreamCAFile: pki.CA}
	if err := tierCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tier := testserver.Start(t, tierCfg, quiet)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for _, tt := range []struct {
		method, token string
		want          int
	}{
		{"PUT", "", 401},
		{"PUT", tk.Read, 403},
		{"PUT", tk.Write, 201},
		{"GET", tk.Read, 200},
	} {
		req, err := http.NewRequest(tt.method, "http://"+tier.GatewayAddr()+"/v1/kv/through-tier", strings.NewReader("v"))
		if err != nil {
			t.Fatal(err)
		}
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s through the tier with token %.8q: %d; want %d", tt.method, tt.token, resp.StatusCode, tt.want)
		}
	}
}
