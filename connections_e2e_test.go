package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"putallkv/kitex_gen/kv"
	"putallkv/pkg/kvclient"
)

// fill opens n connections to addr and keeps them open, idle, until the test ends.
func fill(t *testing.T, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection to %s: %v", addr, err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
}

// TestE2ERPCConnectionCap fills the RPC server's connections (one a real client's, the rest
// idle): a client that needs a new connection is refused, UNAVAILABLE, and the client whose
// connection is open is still served.
func TestE2ERPCConnectionCap(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.MaxConnections = 3
	a, c := startTestServer(t, cfg)
	ctx := context.Background()
	if _, err := c.Put(ctx, &kv.PutRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	fill(t, a.rpcAddr(), 2) // accepted in order, after the client's connection

	other, err := kvclient.New([]string{a.rpcAddr()}, kvclient.WithRPCTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = other.Put(ctx, &kv.PutRequest{Key: "k2", Value: []byte("v")})
	wantErr(t, err, kvclient.ErrUnavailable)
	if _, err := c.Get(ctx, &kv.GetRequest{Key: "k"}); err != nil {
		t.Fatalf("the client within the cap: %v", err)
	}
}

// TestE2EAdminReachableWhenPortsFull runs the real binary with an open-file limit of 256 and
// opens 200 idle connections to each of the RPC and HTTP ports, more than the process has
// descriptors for: the caps refuse what is over them, and the admin port still answers.
func TestE2EAdminReachableWhenPortsFull(t *testing.T) {
	server, _ := buildBinaries(t)
	dir := t.TempDir()
	conf := "server:\n  addr: 127.0.0.1:0\n  shutdown_timeout: 5s\n  max_connections: 60\n" +
		"admin:\n  addr: 127.0.0.1:0\n  max_connections: 8\n" +
		"gateway:\n  addr: 127.0.0.1:0\n  max_connections: 60\n"
	file := filepath.Join(dir, "putallkv.yaml")
	cmd := exec.Command("sh", "-c", `ulimit -n 256 && exec "$0" -conf "$1"`, server, file)
	p := startCommand(t, cmd, file, conf)
	if p.gw == "" {
		t.Fatal("the server logged no gateway address")
	}
	fill(t, p.rpc, 200)
	fill(t, p.gw, 200)

	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	resp, err := client.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("admin port with the data ports full: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin /metrics: %d %s", resp.StatusCode, b)
	}
}
