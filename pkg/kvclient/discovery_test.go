package kvclient_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testdiscovery"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// dnsName is the name the test's DNS server answers for.
const dnsName = "kv.putallkv.test."

// dnsServer is a DNS server on loopback UDP that answers A queries for dnsName with the
// addresses it is given (and AAAA queries with none), so a client's DNS resolver is tested
// through a real lookup, as a name whose records change.
type dnsServer struct {
	conn *net.UDPConn
	done chan struct{}

	mu  sync.Mutex
	ips []netip.Addr
}

// startDNS starts a DNS server on the first free port of 23400-23499; it stops when t ends.
func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	var conn *net.UDPConn
	var err error
	for port := 23400; port < 23500; port++ {
		if conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no free UDP port for the DNS server: %v", err)
	}
	d := &dnsServer{conn: conn, done: make(chan struct{})}
	go d.serve()
	t.Cleanup(func() {
		_ = conn.Close()
		<-d.done
	})
	return d
}

// resolver is a net.Resolver that asks this server only.
func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", d.conn.LocalAddr().String())
	}}
}

func (d *dnsServer) set(ips ...netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips = slices.Clone(ips)
}

func (d *dnsServer) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		if resp, err := d.answer(buf[:n]); err == nil {
			_, _ = d.conn.WriteToUDP(resp, from)
		}
	}
}

// answer builds the response to one query.
func (d *dnsServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	known := strings.EqualFold(q.Name.String(), dnsName)
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if known && q.Type == dnsmessage.TypeA {
		d.mu.Lock()
		ips := d.ips // set replaces it, never changes it
		d.mu.Unlock()
		for _, ip := range ips {
			if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET}, dnsmessage.AResource{A: ip.As4()}); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}

// dnsCluster is servers on 127.0.0.2, 127.0.0.3, ..., all on one port, behind dnsName: a
// server is findable once its address is among the name's records.
type dnsCluster struct {
	dns   *dnsServer
	nodes testdiscovery.Nodes
	port  string
	hosts []netip.Addr
}

func (c *dnsCluster) Add(t *testing.T) *server.Server {
	host := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + len(c.hosts))})
	port := c.port
	if port == "" {
		port = "0"
	}
	s := c.nodes.Start(t, testserver.Config(t, func(cfg *config.Config) {
		cfg.Server.Addr = net.JoinHostPort(host.String(), port)
	}))
	_, c.port, _ = net.SplitHostPort(s.RPCAddr())
	c.hosts = append(c.hosts, host)
	c.dns.set(c.hosts...)
	return s
}

// Remove stops s, then takes its address out of the name: in between, its address is still
// listed and dials to it fail.
func (c *dnsCluster) Remove(t *testing.T, s *server.Server) {
	c.nodes.Stop(t, s)
	host, _, _ := net.SplitHostPort(s.RPCAddr())
	c.hosts = slices.DeleteFunc(c.hosts, func(a netip.Addr) bool { return a.String() == host })
	c.dns.set(c.hosts...)
}

func (c *dnsCluster) target() string { return "dns://" + net.JoinHostPort(dnsName, c.port) }

// TestDNSResolverFollowsTheName runs the discovery scenario over a DNS name whose records
// change while the client runs.
func TestDNSResolverFollowsTheName(t *testing.T) {
	c := &dnsCluster{dns: startDNS(t)}
	testdiscovery.Churn(t, c, func(opts ...kvclient.Option) (*kvclient.Client, error) {
		r, err := kvclient.NewDNSResolver(c.target(), c.dns.resolver())
		if err != nil {
			return nil, err
		}
		return kvclient.NewWithResolver(r, opts...)
	})
}

// TestDNSResolverKeepsServersWhenLookupFails checks that a name that stops resolving leaves
// the client with the servers it found before, and that a target without a port is refused.
func TestDNSResolverKeepsServersWhenLookupFails(t *testing.T) {
	c := &dnsCluster{dns: startDNS(t)}
	c.Add(t)
	r, err := kvclient.NewDNSResolver(c.target(), c.dns.resolver())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kvclient.NewWithResolver(r, kvclient.WithRefreshInterval(testdiscovery.Refresh))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	getMissing(t, cl, 1)
	c.dns.set() // the name now has no address: lookups fail
	if _, err := r.Resolve(context.Background(), r.Target(context.Background(), nil)); err == nil {
		t.Fatal("lookup of a name without addresses succeeded")
	}
	getMissing(t, cl, 50)

	for _, bad := range []string{"kv.internal", "dns://kv.internal", ":8888"} {
		if _, err := kvclient.NewDNSResolver(bad, nil); err == nil {
			t.Errorf("NewDNSResolver(%q) succeeded", bad)
		}
	}
	if _, err := kvclient.NewWithResolver(nil); err == nil {
		t.Error("NewWithResolver(nil) succeeded")
	}
}

// TestNoServerFoundIsUnavailable checks that a client whose resolver finds nothing fails its
// calls with UNAVAILABLE, a stable code, rather than hanging or panicking.
func TestNoServerFoundIsUnavailable(t *testing.T) {
	c := &dnsCluster{dns: startDNS(t), port: "1"}
	r, err := kvclient.NewDNSResolver(c.target(), c.dns.resolver())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kvclient.NewWithResolver(r, kvclient.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	_, err = cl.Get(context.Background(), &kv.GetRequest{Key: "k"})
	if !errors.Is(err, kvclient.ErrUnavailable) {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	t.Logf("no server: %v", err)
}
