package e2e

import (
	"context"
	"testing"

	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

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
	testnet.Hold(t, a.RPCAddr(), 2) // accepted in order, after the client's connection

	other := newClient(t, a.RPCAddr())
	_, err := other.Put(ctx, &kv.PutRequest{Key: "k2", Value: []byte("v")})
	wantErr(t, err, kvclient.ErrUnavailable)
	if _, err := c.Get(ctx, &kv.GetRequest{Key: "k"}); err != nil {
		t.Fatalf("the client within the cap: %v", err)
	}
}
