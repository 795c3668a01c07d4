package kvclient

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/loadbalance"
	"github.com/cloudwego/kitex/pkg/loadbalance/lbcache"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
)

// defaultRefreshInterval is how often a client asks its resolver for the servers again
// (WithRefreshInterval): Kitex's own default.
const defaultRefreshInterval = 5 * time.Second

// manyServers is the server count newClient is given when a resolver finds the servers: how
// many there will be is not known, so the client is built as for several (with breakers).
const manyServers = 2

// WithRefreshInterval sets how often a client made by NewWithResolver asks its resolver for the
// servers again (default 5s): a server that appears is used, and one that disappears is no
// longer sent calls (its pooled connections are closed), within about this long. It does
// nothing for New's fixed list.
func WithRefreshInterval(d time.Duration) Option {
	return func(o *options) { o.refresh = d }
}

// NewWithResolver returns a Client that spreads calls over the servers r finds, asking r again
// every WithRefreshInterval. r is a Kitex resolver: NewDNSResolver's (every address of a DNS
// name), etcdresolver's (the servers registered in etcd), or any other. Calls go through the
// same pool of long connections, breakers and retries as New's; while r finds no server they
// fail with UNAVAILABLE. When r's answer cannot be read (DNS or etcd unreachable), the client
// keeps the servers it knew. Closing the Client does not close r.
//
// Kitex keeps, for every client made with a resolver, a balancer factory and its goroutine for
// the life of the process: make one such Client per resolver and keep it, rather than one per
// call.
func NewWithResolver(r discovery.Resolver, opts ...Option) (*Client, error) {
	if r == nil {
		return nil, fmt.Errorf("kvclient: no resolver")
	}
	o := newOptions(opts)
	o.resolver = r
	return newClient(o, manyServers)
}

// resolverOptions are the Kitex options of a client whose servers o.resolver finds, and the
// resolver as that client uses it: it tells breaker of servers that go away (nil: no
// breakers), and the client's balancer of its own asks it again every o.refresh.
func (o *options) resolverOptions(breaker *breakers) (*clientResolver, []client.Option) {
	r := &clientResolver{Resolver: o.resolver}
	if breaker != nil {
		r.forget = breaker.forget
	}
	return r, []client.Option{
		client.WithResolver(r),
		// Not cacheable: Kitex would otherwise share one balancer among the clients whose
		// resolvers have the same name, whatever each resolver reads.
		client.WithLoadBalancer(loadbalance.NewWeightedBalancer(),
			&lbcache.Options{RefreshInterval: o.refresh, Cacheable: false}),
	}
}

// clientResolver is a resolver as one client uses it. It tells the client's breakers of the
// servers each new answer no longer lists, so that they keep state only for servers that are
// there; and once the client is closed it repeats its last answer instead of asking again
// (Kitex goes on refreshing a closed client's servers until it expires them, 15 to 30 s
// later).
type clientResolver struct {
	discovery.Resolver
	forget func(discovery.Change) // nil: no breakers
	closed atomic.Bool
	last   atomic.Pointer[discovery.Result]
}

// Resolve asks the wrapped resolver, unless the client is closed.
func (r *clientResolver) Resolve(ctx context.Context, desc string) (discovery.Result, error) {
	if last := r.last.Load(); last != nil && r.closed.Load() {
		return *last, nil
	}
	res, err := r.Resolver.Resolve(ctx, desc)
	if err == nil {
		r.last.Store(&res)
	}
	return res, err
}

// Diff is the wrapped resolver's, after which the removed servers are forgotten.
func (r *clientResolver) Diff(cacheKey string, prev, next discovery.Result) (discovery.Change, bool) {
	ch, changed := r.Resolver.Diff(cacheKey, prev, next)
	if changed && len(ch.Removed) > 0 && r.forget != nil {
		r.forget(ch)
	}
	return ch, changed
}

// close makes the resolver stop asking.
func (r *clientResolver) close() { r.closed.Store(true) }

// dnsScheme may begin a DNS resolver's target.
const dnsScheme = "dns://"

// dnsTimeout bounds one lookup of a DNS resolver.
const dnsTimeout = 5 * time.Second

// dnsResolver finds the servers behind a DNS name; see NewDNSResolver.
type dnsResolver struct {
	host, port string
	lookup     *net.Resolver
}

// NewDNSResolver returns a resolver of the servers behind a DNS name, for NewWithResolver:
// target is "host:port" (or "dns://host:port"), and every A and AAAA address host resolves to,
// with port, is a server. The name is looked up again at each refresh, so servers added to or
// removed from it are used or dropped without restarting the client; a lookup that fails or
// finds no address keeps the servers found before. lookup is the resolver asked (nil:
// net.DefaultResolver, which follows the system's configuration).
func NewDNSResolver(target string, lookup *net.Resolver) (discovery.Resolver, error) {
	hostPort := target
	if len(target) >= len(dnsScheme) && strings.EqualFold(target[:len(dnsScheme)], dnsScheme) {
		hostPort = target[len(dnsScheme):]
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("kvclient: DNS target must be host:port, got %q", target)
	}
	if lookup == nil {
		lookup = net.DefaultResolver
	}
	return &dnsResolver{host: host, port: port, lookup: lookup}, nil
}

// Target is the name and port looked up.
func (d *dnsResolver) Target(context.Context, rpcinfo.EndpointInfo) string {
	return net.JoinHostPort(d.host, d.port)
}

// Resolve looks the name up and returns each address it has, with the port, as a server.
func (d *dnsResolver) Resolve(ctx context.Context, desc string) (discovery.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	ips, err := d.lookup.LookupIPAddr(ctx, d.host)
	if err != nil {
		return discovery.Result{}, fmt.Errorf("kvclient: looking up %s: %w", d.host, err)
	}
	if len(ips) == 0 {
		return discovery.Result{}, fmt.Errorf("kvclient: %s has no address", d.host)
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip.String(), d.port))
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	instances := make([]discovery.Instance, len(addrs))
	for i, a := range addrs {
		instances[i] = discovery.NewInstance("tcp", a, discovery.DefaultWeight, nil)
	}
	return discovery.Result{Cacheable: true, CacheKey: desc, Instances: instances}, nil
}

// Diff is Kitex's default comparison of two answers.
func (d *dnsResolver) Diff(cacheKey string, prev, next discovery.Result) (discovery.Change, bool) {
	return discovery.DefaultDiff(cacheKey, prev, next)
}

// Name names the resolver in Kitex's logs.
func (d *dnsResolver) Name() string { return "dns" }
