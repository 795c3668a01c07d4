// Package discovery tests how clients find putallkv nodes by themselves, against a real etcd
// (script/etcd.sh, one per test binary) and real servers: nodes registering and
// deregistering, the SDK's etcd resolver, and a gateway tier whose upstream is found in etcd
// or by DNS.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/putallkv/putallkv/internal/etcdtest"
	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testdiscovery"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/kvclient/etcdresolver"
)

func TestMain(m *testing.M) { etcdtest.Main(m) }

// service is a service name of the test's own, so that tests sharing the etcd do not see one
// another's nodes.
func service(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}

// etcdCluster is nodes that register in the test's etcd under one service name.
type etcdCluster struct {
	endpoints []string
	service   string
	ttl       time.Duration
	nodes     testdiscovery.Nodes
}

func newEtcdCluster(t *testing.T) *etcdCluster {
	return &etcdCluster{endpoints: etcdtest.Endpoints(t), service: service(t), ttl: 2 * time.Second}
}

// config is a node's configuration: registered in etcd, edited by edit (nil: no change).
func (c *etcdCluster) config(t *testing.T, edit func(*config.Config)) *config.Config {
	return testserver.Config(t, func(cfg *config.Config) {
		cfg.Discovery.EtcdEndpoints = strings.Join(c.endpoints, ",")
		cfg.Discovery.Service = c.service
		cfg.Discovery.TTL = c.ttl
		if edit != nil {
			edit(cfg)
		}
	})
}

func (c *etcdCluster) Add(t *testing.T) *server.Server { return c.nodes.Start(t, c.config(t, nil)) }

// Remove stops s, which deregisters before it stops taking calls.
func (c *etcdCluster) Remove(t *testing.T, s *server.Server) { c.nodes.Stop(t, s) }

func (c *etcdCluster) resolverConfig() etcdresolver.Config {
	return etcdresolver.Config{Endpoints: c.endpoints, Service: c.service}
}

// etcd is a plain etcd client, to look at the registry as another program would.
func etcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdtest.Endpoints(t), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestEtcdResolverFollowsTheRegistry runs the discovery scenario with the SDK's etcd resolver
// over nodes that register themselves.
func TestEtcdResolverFollowsTheRegistry(t *testing.T) {
	c := newEtcdCluster(t)
	testdiscovery.Churn(t, c, func(opts ...kvclient.Option) (*kvclient.Client, error) {
		r, err := etcdresolver.New(c.resolverConfig())
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = r.Close() })
		return kvclient.NewWithResolver(r, opts...)
	})
}

// TestGatewayTierFindsUpstreamInEtcd runs the scenario through a gateway tier whose upstream
// is etcd://service: its client is the SDK's, fed by the same resolver.
func TestGatewayTierFindsUpstreamInEtcd(t *testing.T) {
	c := newEtcdCluster(t)
	c.Add(t)
	tierCfg := testserver.Config(t, func(cfg *config.Config) {
		cfg.Gateway.Upstream = "etcd://" + c.service
		cfg.Discovery.EtcdEndpoints = strings.Join(c.endpoints, ",")
		cfg.Discovery.RefreshInterval = testdiscovery.Refresh
	})
	tier := testserver.Start(t, tierCfg, nil)
	base := "http://" + tier.GatewayAddr()
	if code, _, body := testnet.Do(t, "PUT", base+"/v1/kv/tier", "1"); code != 201 {
		t.Fatalf("PUT through the tier: %d %s", code, body)
	}
	if code, _, body := testnet.Do(t, "GET", base+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz of the tier: %d %s", code, body)
	}
	if tier.RPCAddr() != "" {
		t.Fatal("a gateway tier opened an RPC server")
	}
	// The tier does not register itself.
	if got := registered(t, c.resolverConfig()); len(got) != 1 {
		t.Fatalf("registered: %v, want the one node", got)
	}
}

// TestGatewayTierFindsUpstreamByDNS points a gateway tier at dns://localhost:PORT: the system's
// resolver answers from /etc/hosts, and the node on 127.0.0.1 serves.
func TestGatewayTierFindsUpstreamByDNS(t *testing.T) {
	node := testserver.Start(t, testserver.Config(t, nil), nil)
	_, port, _ := net.SplitHostPort(node.RPCAddr())
	tier := testserver.Start(t, testserver.Config(t, func(cfg *config.Config) {
		cfg.Gateway.Upstream = "dns://localhost:" + port
	}), nil)
	base := "http://" + tier.GatewayAddr()
	if code, _, body := testnet.Do(t, "PUT", base+"/v1/kv/dns", "1"); code != 201 {
		t.Fatalf("PUT through the tier: %d %s", code, body)
	}
	if code, _, body := testnet.Do(t, "GET", base+"/v1/kv/dns", ""); code != 200 || string(body) != "1" {
		t.Fatalf("GET through the tier: %d %s", code, body)
	}
}

// registered lists the addresses registered under cfg.Service.
func registered(t *testing.T, cfg etcdresolver.Config) []string {
	t.Helper()
	got, err := etcdresolver.Registered(bounded(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestNodeRegistersAndDeregisters checks what a node writes in etcd (kitex-contrib's key and
// value, on a lease of discovery.ttl), that it keeps the key past the TTL while it runs, and
// that a graceful shutdown removes the key at once.
func TestNodeRegistersAndDeregisters(t *testing.T) {
	c := newEtcdCluster(t)
	node := c.Add(t)
	cli := etcd(t)
	key := "kitex/registry-etcd/" + c.service + "/" + node.RPCAddr()
	resp, err := cli.Get(bounded(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("no key %s", key)
	}
	var value map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &value); err != nil {
		t.Fatalf("value %s: %v", resp.Kvs[0].Value, err)
	}
	want := map[string]any{"network": "tcp", "address": node.RPCAddr(), "weight": float64(10), "tags": nil}
	if fmt.Sprint(value) != fmt.Sprint(want) {
		t.Errorf("value %v, want %v", value, want)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	ttl, err := cli.TimeToLive(bounded(t), lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 2 {
		t.Errorf("lease granted for %ds, want discovery.ttl (2s)", ttl.GrantedTTL)
	}

	// Kept alive: the key outlives its TTL several times over while the node runs.
	deadline := time.Now().Add(3 * c.ttl)
	for time.Now().Before(deadline) {
		if got := registered(t, c.resolverConfig()); len(got) != 1 {
			t.Fatalf("registered %v while the node runs", got)
		}
		time.Sleep(c.ttl / 4)
	}

	c.Remove(t, node)
	if got := registered(t, c.resolverConfig()); len(got) != 0 {
		t.Fatalf("registered %v after a graceful shutdown", got)
	}
	if ttl, err := cli.TimeToLive(bounded(t), lease); err != nil || ttl.TTL != -1 {
		t.Errorf("the lease is still there after shutdown: %+v %v", ttl, err)
	}
}

// TestRegistrationComesBack checks that a node whose lease is lost (revoked here, as etcd
// does to a lease not kept alive in time) registers again by itself.
func TestRegistrationComesBack(t *testing.T) {
	c := newEtcdCluster(t)
	node := c.Add(t)
	cli := etcd(t)
	key := "kitex/registry-etcd/" + c.service + "/" + node.RPCAddr()
	resp, err := cli.Get(bounded(t), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("no key %s: %v", key, err)
	}
	first := clientv3.LeaseID(resp.Kvs[0].Lease)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	puts := cli.Watch(ctx, key, clientv3.WithFilterDelete())
	if _, err := cli.Revoke(bounded(t), first); err != nil {
		t.Fatal(err)
	}
	for w := range puts {
		if err := w.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range w.Events {
			if lease := clientv3.LeaseID(ev.Kv.Lease); lease != first {
				t.Logf("registered again under lease %x", lease)
				return
			}
		}
	}
	t.Fatal("the node did not register again within 20s of losing its lease")
}

// TestRegisterRefusesWhatClientsCannotDial checks the addresses a node may not register.
func TestRegisterRefusesWhatClientsCannotDial(t *testing.T) {
	cfg := etcdresolver.Config{Endpoints: etcdtest.Endpoints(t), Service: service(t)}
	for _, addr := range []string{"0.0.0.0:8888", ":8888", "[::]:8888", "10.0.0.1:0", "nonsense"} {
		if g, err := etcdresolver.Register(cfg, addr, 2*time.Second); err == nil {
			_ = g.Close(context.Background())
			t.Errorf("Register(%q) succeeded", addr)
		}
	}
	if g, err := etcdresolver.Register(cfg, "127.0.0.1:1", 500*time.Millisecond); err == nil {
		_ = g.Close(context.Background())
		t.Error("Register with a TTL under 1s succeeded")
	}
	bad := cfg
	bad.Service = "a/b"
	if _, err := etcdresolver.New(bad); err == nil {
		t.Error("a service name with '/' was accepted")
	}
}

// TestRegisteredDeadNodeIsSkipped checks the case of a node that died without deregistering,
// whose key lives on until its lease expires: calls do not fail (a failed dial is tried on
// another node), and once its breaker opens the dead address is not dialled any more.
func TestRegisteredDeadNodeIsSkipped(t *testing.T) {
	c := newEtcdCluster(t)
	live := c.Add(t)
	dead := testnet.DeadAddr(t)
	g, err := etcdresolver.Register(c.resolverConfig(), dead, c.ttl)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Close(context.Background()) }()
	r, err := etcdresolver.New(c.resolverConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	sent := testdiscovery.NewSends()
	cl, err := kvclient.NewWithResolver(r, kvclient.WithKitexOptions(client.WithInstanceMW(sent.Middleware)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	get := func() {
		t.Helper()
		if _, err := cl.Get(bounded(t), &kv.GetRequest{Key: "absent"}); !errors.Is(err, kvclient.ErrNotFound) {
			t.Fatalf("got %v, want NOT_FOUND", err)
		}
	}
	// Until the dead node has been picked as often as its breaker needs (10 samples).
	for i := 0; sent.To(dead) < 10; i++ {
		if i == 2000 {
			t.Fatalf("dead node tried %d times in %d calls", sent.To(dead), i)
		}
		get()
	}
	before := sent.To(dead)
	for range 300 { // the breaker stays open 5s before it probes; 300 calls take far less
		get()
	}
	if n := sent.To(dead) - before; n != 0 {
		t.Errorf("the dead node was dialled %d times after its breaker opened", n)
	}
	t.Logf("dead node: %d attempts, then none; live node %s: %d", before, live.RPCAddr(), sent.To(live.RPCAddr()))
}

// TestNoNodeRegisteredIsUnavailable checks that a client of a service with no node registered
// fails its calls with UNAVAILABLE, a stable code.
func TestNoNodeRegisteredIsUnavailable(t *testing.T) {
	r, err := etcdresolver.New(newEtcdCluster(t).resolverConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	cl, err := kvclient.NewWithResolver(r, kvclient.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	if _, err := cl.Get(bounded(t), &kv.GetRequest{Key: "k"}); !errors.Is(err, kvclient.ErrUnavailable) {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}

// TestUnreachableEtcdStopsStartUp checks that a server told to register in an etcd it cannot
// reach does not start, and says why.
func TestUnreachableEtcdStopsStartUp(t *testing.T) {
	cfg := testserver.Config(t, func(cfg *config.Config) { cfg.Discovery.EtcdEndpoints = testnet.DeadAddr(t) })
	s, err := server.Start(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		testnet.Stop(t, s)
		t.Fatal("the server started without registering")
	}
	if !strings.Contains(err.Error(), "discovery: etcdresolver: granting a lease") {
		t.Fatalf("start-up failed with %v; want it to name the registration", err)
	}
	t.Logf("start-up refused: %v", err)
}

// TestEtcdWithAuthentication turns etcd's authentication on (and off again at the end) and
// checks that a node with discovery.etcd_username and etcd_password_file registers, that a gateway
// tier with them finds it, and that a node without them does not start.
func TestEtcdWithAuthentication(t *testing.T) {
	cli := etcd(t)
	ctx := bounded(t)
	const rootPassword, nodePassword = "root-secret", "node-secret"
	for _, step := range []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "putallkv-node"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "putallkv-node", "kitex/registry-etcd/",
				clientv3.GetPrefixRangeEnd("kitex/registry-etcd/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "node", nodePassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "node", "putallkv-node"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		root, err := clientv3.New(clientv3.Config{Endpoints: etcdtest.Endpoints(t), DialTimeout: 5 * time.Second,
			Username: "root", Password: rootPassword, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := root.AuthDisable(ctx); err != nil {
			t.Fatalf("turning etcd's authentication off again: %v", err)
		}
		for _, u := range []string{"root", "node"} {
			_, _ = root.UserDelete(ctx, u)
		}
		for _, r := range []string{"root", "putallkv-node"} {
			_, _ = root.RoleDelete(ctx, r)
		}
	})

	passwordFile := filepath.Join(t.TempDir(), "etcd.pass")
	if err := os.WriteFile(passwordFile, []byte(nodePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newEtcdCluster(t)
	withCredentials := func(cfg *config.Config) {
		cfg.Discovery.EtcdUsername, cfg.Discovery.EtcdPasswordFile = "node", passwordFile
	}
	node := c.nodes.Start(t, c.config(t, withCredentials))
	tier := testserver.Start(t, testserver.Config(t, func(cfg *config.Config) {
		cfg.Gateway.Upstream = "etcd://" + c.service
		cfg.Discovery.EtcdEndpoints = strings.Join(c.endpoints, ",")
		withCredentials(cfg)
	}), nil)
	if code, _, body := testnet.Do(t, "PUT", "http://"+tier.GatewayAddr()+"/v1/kv/auth", "1"); code != 201 {
		t.Fatalf("PUT through the tier to %s: %d %s", node.RPCAddr(), code, body)
	}

	s, err := server.Start(c.config(t, nil), slog.New(slog.DiscardHandler))
	if err == nil {
		testnet.Stop(t, s)
		t.Fatal("a node without etcd credentials registered")
	}
	t.Logf("without credentials: %v", err)
}
