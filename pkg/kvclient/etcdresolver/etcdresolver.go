// Package etcdresolver finds putallkv servers in etcd, and registers a server there: the
// registry of kitex-contrib/registry-etcd, read and written with etcd's own client.
//
// A server registers one key, <prefix>/<service>/<host:port> (prefix "kitex/registry-etcd",
// service "putallkv" by default), whose value is the JSON {"network":"tcp","address":
// "host:port","weight":10,"tags":null}, attached to a lease of its TTL that it keeps alive
// while it runs and revokes when it stops. So the servers of kitex-contrib's registry and
// resolver and those of this package find one another.
//
// It is a package apart from kvclient so that only programs that import it link etcd's
// client (and gRPC beneath it): a program on kvclient alone does not.
package etcdresolver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultPrefix  = "kitex/registry-etcd"
	DefaultService = "putallkv"
)

// defaultTimeout bounds dialling etcd and each request to it, when Config leaves it 0.
const defaultTimeout = 3 * time.Second

// Config says where the registry is.
type Config struct {
	// Endpoints are etcd's client addresses ("host:port" or "http://host:port").
	Endpoints []string
	// Service is the name the servers register under (default "putallkv").
	Service string
	// Prefix is the keys' prefix (default "kitex/registry-etcd", kitex-contrib's).
	Prefix string
	// Timeout bounds dialling etcd and each request to it (default 3s).
	Timeout time.Duration
	// Username and Password authenticate to etcd when it has authentication on.
	Username, Password string
	// TLS, when set, is the client's TLS configuration for etcd's endpoints.
	TLS *tls.Config
	// Logger receives what registration has to say while it runs (nil: nothing).
	Logger *slog.Logger
}

// dir is the key prefix of the service's servers, with a trailing slash.
func (c *Config) dir() string { return c.Prefix + "/" + c.Service + "/" }

// connect fills in c's defaults, checks it, and opens an etcd client.
func (c *Config) connect() (*clientv3.Client, error) {
	if c.Service == "" {
		c.Service = DefaultService
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcdresolver: no etcd endpoint")
	}
	if strings.Contains(c.Service, "/") {
		return nil, fmt.Errorf("etcdresolver: service name must not contain '/', got %q", c.Service)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: c.Timeout,
		Username:    c.Username,
		Password:    c.Password,
		TLS:         c.TLS,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdresolver: %w", err)
	}
	return cli, nil
}

// instance is the value of a registered server's key, as kitex-contrib's registry writes it.
type instance struct {
	Network string            `json:"network"`
	Address string            `json:"address"`
	Weight  int               `json:"weight"`
	Tags    map[string]string `json:"tags"`
}

// Resolver is a Kitex resolver (kvclient.NewWithResolver) of the servers registered in etcd
// under one service. Each refresh reads their keys once; a server whose key is gone (it
// stopped, or its lease expired) is dropped. Close it after the clients that use it.
type Resolver struct {
	cfg Config
	cli *clientv3.Client

	mu     sync.Mutex
	closed bool
	last   discovery.Result // the last answer, given again once closed
}

// New returns a resolver of the servers cfg.Endpoints' etcd lists under cfg.Service. It
// connects in the background: etcd need not be up yet.
func New(cfg Config) (*Resolver, error) {
	cli, err := cfg.connect()
	if err != nil {
		return nil, err
	}
	return &Resolver{cfg: cfg, cli: cli}, nil
}

// Target is the key prefix of the service's servers.
func (r *Resolver) Target(context.Context, rpcinfo.EndpointInfo) string { return r.cfg.dir() }

// Resolve reads the servers registered under desc (Target's prefix). A value that is not a
// registration is skipped; no server at all is an empty answer, not an error, so that a client
// stops calling servers that are all gone. Once the resolver is closed it repeats its last
// answer.
func (r *Resolver) Resolve(ctx context.Context, desc string) (discovery.Result, error) {
	r.mu.Lock()
	if r.closed {
		defer r.mu.Unlock()
		return r.last, nil
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, err := r.cli.Get(ctx, desc, clientv3.WithPrefix())
	if err != nil {
		return discovery.Result{}, fmt.Errorf("etcdresolver: reading %s: %w", desc, err)
	}
	var instances []discovery.Instance
	for _, kv := range resp.Kvs {
		var in instance
		if err := json.Unmarshal(kv.Value, &in); err != nil || in.Address == "" {
			continue
		}
		if in.Network == "" {
			in.Network = "tcp"
		}
		if in.Weight <= 0 {
			in.Weight = discovery.DefaultWeight
		}
		instances = append(instances, discovery.NewInstance(in.Network, in.Address, in.Weight, in.Tags))
	}
	res := discovery.Result{Cacheable: true, CacheKey: desc, Instances: instances}
	r.mu.Lock()
	r.last = res
	r.mu.Unlock()
	return res, nil
}

// Diff is Kitex's default comparison of two answers.
func (r *Resolver) Diff(cacheKey string, prev, next discovery.Result) (discovery.Change, bool) {
	return discovery.DefaultDiff(cacheKey, prev, next)
}

// Name names the resolver in Kitex's logs.
func (r *Resolver) Name() string { return "etcd" }

// Close closes the connection to etcd.
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.cli.Close()
}

// Registration is one server's key in etcd, kept while it runs; see Register.
type Registration struct {
	cfg   Config
	cli   *clientv3.Client
	key   string
	value string
	ttl   int64

	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	lease clientv3.LeaseID
}

// minTTL is the shortest lease Register takes: etcd's own minimum is larger still (it raises
// a shorter TTL to about 1.5 election timeouts, 1.5s by default).
const minTTL = time.Second

// Register registers the server at addr ("host:port", the address clients are to dial) under
// cfg.Service, with a lease of ttl (whole seconds, rounded up), kept alive until Close. Should
// the lease be lost (etcd unreachable for longer than ttl), the key is written again, with a
// new lease, as soon as etcd answers. A server that dies without Close disappears from the
// registry when its lease expires, ttl after its last keep-alive.
func Register(cfg Config, addr string, ttl time.Duration) (*Registration, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return nil, fmt.Errorf("etcdresolver: address to register must be host:port, got %q", addr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("etcdresolver: address to register must name a host clients can reach, got %q", addr)
	}
	if ttl < minTTL {
		return nil, fmt.Errorf("etcdresolver: TTL must be at least %s, got %s", minTTL, ttl)
	}
	cli, err := cfg.connect()
	if err != nil {
		return nil, err
	}
	value, err := json.Marshal(instance{Network: "tcp", Address: addr, Weight: discovery.DefaultWeight})
	if err != nil { // a struct of strings always encodes
		_ = cli.Close()
		return nil, err
	}
	g := &Registration{cfg: cfg, cli: cli, key: cfg.dir() + addr, value: string(value),
		ttl: int64(math.Ceil(ttl.Seconds())), stop: make(chan struct{}), done: make(chan struct{})}
	alive, err := g.put()
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	go g.keep(alive)
	return g, nil
}

// Key is the registered key.
func (g *Registration) Key() string { return g.key }

// put grants a lease, writes the key with it and starts keeping it alive, returning the
// channel of keep-alive answers (closed when the lease is lost or Close stops it).
func (g *Registration) put() (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeout)
	defer cancel()
	lease, err := g.cli.Grant(ctx, g.ttl)
	if err != nil {
		return nil, fmt.Errorf("etcdresolver: granting a lease: %w", err)
	}
	if _, err := g.cli.Put(ctx, g.key, g.value, clientv3.WithLease(lease.ID)); err != nil {
		return nil, fmt.Errorf("etcdresolver: writing %s: %w", g.key, err)
	}
	// The keep-alive runs until Close cancels the client's context.
	alive, err := g.cli.KeepAlive(g.cli.Ctx(), lease.ID)
	if err != nil {
		return nil, fmt.Errorf("etcdresolver: keeping lease %x alive: %w", lease.ID, err)
	}
	g.mu.Lock()
	g.lease = lease.ID
	g.mu.Unlock()
	return alive, nil
}

// keep drains the keep-alive answers; when the lease is lost it registers again, every
// retryDelay until etcd takes it, until Close.
func (g *Registration) keep(alive <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(g.done)
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-g.stop:
			return
		case _, ok := <-alive:
			if ok {
				continue
			}
			g.cfg.Logger.Warn("etcd registration lost its lease; registering again", "key", g.key)
			alive = nil
			retry.Reset(0)
		case <-retry.C:
			var err error
			if alive, err = g.put(); err != nil {
				g.cfg.Logger.Warn("etcd registration failed; trying again", "key", g.key, "err", err,
					"retry_in", g.retryDelay().String())
				alive = nil
				retry.Reset(g.retryDelay())
				continue
			}
			g.cfg.Logger.Info("etcd registration renewed", "key", g.key)
		}
	}
}

// retryDelay is the wait between two attempts to register again: a third of the TTL, so that
// a new attempt is made before a lease granted meanwhile could expire.
func (g *Registration) retryDelay() time.Duration {
	return time.Duration(g.ttl) * time.Second / 3
}

// Close deregisters: it revokes the lease, which deletes the key at once, then closes the
// connection to etcd. ctx bounds the revocation; should it fail, the key still goes when the
// lease expires.
func (g *Registration) Close(ctx context.Context) error {
	close(g.stop)
	<-g.done
	g.mu.Lock()
	lease := g.lease
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	_, err := g.cli.Revoke(ctx, lease)
	if err != nil {
		err = fmt.Errorf("etcdresolver: revoking the lease of %s: %w", g.key, err)
	}
	return errors.Join(err, g.cli.Close())
}

// Registered lists the addresses registered under cfg.Service, sorted: what a Resolver would
// find. It is for tools and tests that look at the registry without a Kitex client.
func Registered(ctx context.Context, cfg Config) ([]string, error) {
	r, err := New(cfg)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	res, err := r.Resolve(ctx, r.cfg.dir())
	if err != nil {
		return nil, err
	}
	addrs := make([]string, len(res.Instances))
	for i, in := range res.Instances {
		addrs[i] = in.Address().String()
	}
	slices.Sort(addrs)
	return addrs, nil
}
