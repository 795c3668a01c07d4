// Package config loads the server's configuration: an embedded default YAML document, overlaid
// by an optional YAML file, then by PUTALLKV_<SECTION>_<KEY> environment variables, then by a few
// command-line flags, and validated as a whole so that a bad value stops start-up with a message
// naming its key.
//
// The package does not embed the defaults itself: the caller passes them (main passes
// conf.Default), which keeps this package free of the service's files and lets tests pass their own.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/putallkv/putallkv/pkg/wal"
)

// Config is the whole configuration of a putallkv server. Its yaml tags are the keys of the
// configuration file; each leaf is also settable by the environment variable
// PUTALLKV_<SECTION>_<KEY>, derived from the tags (see Load).
type Config struct {
	Server      ServerConfig      `yaml:"server"`
	Admin       AdminConfig       `yaml:"admin"`
	Store       StoreConfig       `yaml:"store"`
	Limits      LimitsConfig      `yaml:"limits"`
	Idempotency IdempotencyConfig `yaml:"idempotency"`
	HotKeys     HotKeysConfig     `yaml:"hot_keys"`
	Limiter     LimiterConfig     `yaml:"limiter"`
	WAL         WALConfig         `yaml:"wal"`
	Redis       RedisConfig       `yaml:"redis"`
	Gateway     GatewayConfig     `yaml:"gateway"`
	Discovery   DiscoveryConfig   `yaml:"discovery"`
	Log         LogConfig         `yaml:"log"`
	Auth        AuthConfig        `yaml:"auth"`
	TLS         TLSConfig         `yaml:"tls"`
	Tracing     TracingConfig     `yaml:"tracing"`
}

// ServerConfig configures the Kitex RPC server.
type ServerConfig struct {
	// Addr is the host:port the RPC server listens on.
	Addr string `yaml:"addr"`
	// MaxRequestBytes is the largest encoded request accepted (the Kitex codec size limit).
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// DrainTimeout bounds how long the server goes on reading (and discarding) a refused
	// oversized request, so that its caller, still sending it, can read the TOO_LARGE answer.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// ShutdownTimeout bounds how long graceful shutdown waits for in-flight calls.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxConnections caps the RPC connections open at once; more are closed on arrival.
	MaxConnections int `yaml:"max_connections"`
}

// AdminConfig configures the admin HTTP server (/metrics, /healthz, /readyz, /debug/pprof/).
type AdminConfig struct {
	// Addr is the host:port the admin server listens on.
	Addr string `yaml:"addr"`
	// MaxConnections caps the admin connections open at once, apart from the service's ports,
	// so the admin port stays reachable when those are full.
	MaxConnections int `yaml:"max_connections"`
	// RequestTimeout is the deadline of an admin command (POST /admin/...).
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// Engines store.engine names.
const (
	EngineMemory       = "memory"
	EngineDurable      = "durable"
	EngineRedisCluster = "redis_cluster"
)

// StoreConfig configures the engine.
type StoreConfig struct {
	// Engine chooses the engine: "memory", "durable" (the log and snapshots in DataDir) or
	// "redis_cluster" (the Redis Cluster of the redis section). Empty chooses by DataDir:
	// durable when it is set, memory otherwise.
	Engine string `yaml:"engine"`
	// Shards is the number of shards, a power of two so a hash maps to a shard with a mask.
	Shards int `yaml:"shards"`
	// SweepInterval is how often expired keys are freed.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// DataDir holds the write-ahead log and snapshots; empty keeps everything in memory only.
	DataDir string `yaml:"data_dir"`
	// MaxBytes is the memory quota: the most bytes the live keys and values may take (each
	// key counts 64 bytes more for the store's bookkeeping); a write that would cross it is
	// refused. 0 means no quota.
	MaxBytes int `yaml:"max_bytes"`
}

// EngineName is the engine Engine chooses, DataDir deciding when Engine is empty.
func (s StoreConfig) EngineName() string {
	switch {
	case s.Engine != "":
		return s.Engine
	case s.DataDir != "":
		return EngineDurable
	}
	return EngineMemory
}

// RedisConfig configures the redis_cluster engine (see docs/redis-cluster.md).
type RedisConfig struct {
	// Addrs (comma-separated host:port) are seed nodes of the Redis Cluster; the client learns
	// the others from them.
	Addrs string `yaml:"addrs"`
	// ReplicasAck is how many replicas must confirm a write (WAIT) before it is acknowledged;
	// 0 acknowledges once the master applied it, and a failover may then lose it.
	ReplicasAck int `yaml:"replicas_ack"`
	// AckTimeout bounds the wait for the replicas; a write they do not confirm in time fails
	// with UNAVAILABLE, its outcome unknown.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// Username and Password authenticate to every node (Redis ACL, AUTH username password);
	// an empty Username with a Password is the default user. Set the password through
	// PUTALLKV_REDIS_PASSWORD rather than in a file others read.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS makes the engine speak TLS to the nodes; CAFile (empty: the system's roots) verifies
	// their certificates, CertFile and KeyFile are the client certificate it presents (for
	// nodes with tls-auth-clients), both or neither.
	TLS      bool   `yaml:"tls"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// DialTimeout bounds connecting to a node.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// BlockingPoolSize is how many connections to each node the writes that wait for replicas
	// may hold at once (a WAIT holds its connection until it is answered); writes over it wait
	// for one.
	BlockingPoolSize int `yaml:"blocking_pool_size"`
	// Module says every master has loaded putallkv's Redis module (script/redis-module.sh
	// builds it): writes are applied by its PUTALL.APPLY command rather than by the Lua
	// script, at a fraction of the masters' CPU. A node without it gets the script.
	Module bool `yaml:"module"`
}

// AddrList returns the seed addresses, or nil.
func (r RedisConfig) AddrList() []string { return list(r.Addrs) }

// GatewayConfig configures the HTTP gateway.
type GatewayConfig struct {
	// Addr is the host:port of the HTTP gateway; empty runs no gateway beside the RPC server.
	Addr string `yaml:"addr"`
	// Upstream, when set, makes the process a separate gateway tier in front of RPC servers
	// instead of a server with its own store: a comma-separated host:port list, or
	// "dns://host:port" (every address of the name, looked up again every
	// discovery.refresh_interval), or "etcd://service" (the servers registered under that
	// name in the etcd of discovery.etcd_endpoints).
	Upstream string `yaml:"upstream"`
	// MaxBodyBytes bounds a request body; larger ones are refused (413) before they are read.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxConnections caps the HTTP connections open at once; more are answered 503.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a keep-alive connection that waits this long for its next request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HeaderTimeout closes a connection whose request line and headers take longer to arrive.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// BodyTimeout closes a connection whose request body, or response, takes longer to pass.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// RequestTimeout is the deadline of handling a request (a Request-Timeout header may
	// shorten it): past it the caller gets 503 UNAVAILABLE.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// AllowedHosts (comma-separated names or addresses, no ports) are the Host values served;
	// empty means the loopback names and the host of Addr, "*" any.
	AllowedHosts string `yaml:"allowed_hosts"`
	// CORSAllowedOrigins (comma-separated, e.g. https://app.example:8443) are the origins whose
	// browser pages may call the gateway; "*" any; empty none.
	CORSAllowedOrigins string `yaml:"cors_allowed_origins"`
	// AccessLog is which requests get an access-log line: "errors" (status 400 and up),
	// "all" or "off".
	AccessLog string `yaml:"access_log"`
}

// Upstreams returns the upstream addresses, or nil (nil too when the upstream is found by
// DNS or in etcd: see UpstreamDNS and UpstreamEtcd).
func (g GatewayConfig) Upstreams() []string {
	if _, ok := g.UpstreamDNS(); ok {
		return nil
	}
	if _, ok := g.UpstreamEtcd(); ok {
		return nil
	}
	return list(g.Upstream)
}

// Schemes of a gateway.upstream found rather than listed.
const (
	upstreamDNS  = "dns://"
	upstreamEtcd = "etcd://"
)

// UpstreamDNS returns the host:port of a "dns://host:port" upstream, and whether it is one.
func (g GatewayConfig) UpstreamDNS() (string, bool) { return cutScheme(g.Upstream, upstreamDNS) }

// UpstreamEtcd returns the service of an "etcd://service" upstream, and whether it is one.
func (g GatewayConfig) UpstreamEtcd() (string, bool) { return cutScheme(g.Upstream, upstreamEtcd) }

// cutScheme returns s after scheme (matched ignoring case and surrounding spaces), and
// whether s begins with it.
func cutScheme(s, scheme string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return "", false
	}
	return s[len(scheme):], true
}

// DiscoveryConfig configures how nodes are found: a server registers itself in etcd when
// EtcdEndpoints is set, and a gateway tier whose gateway.upstream is "dns://" or "etcd://"
// looks its servers up again every RefreshInterval.
type DiscoveryConfig struct {
	// EtcdEndpoints (comma-separated host:port) are the etcd a server registers in, and a
	// gateway tier with an "etcd://" upstream reads; empty: no etcd.
	EtcdEndpoints string `yaml:"etcd_endpoints"`
	// EtcdUsername, when set, authenticates to etcd (which has authentication on) as this user,
	// with the password in EtcdPasswordFile.
	EtcdUsername string `yaml:"etcd_username"`
	// EtcdPasswordFile is the file holding EtcdUsername's password (one line), read at start.
	EtcdPasswordFile string `yaml:"etcd_password_file"`
	// Service is the name a server registers under (the key
	// kitex/registry-etcd/<service>/<advertise_addr>).
	Service string `yaml:"service"`
	// AdvertiseAddr is the host:port registered, the address clients are to dial; empty
	// registers the address the RPC server listens on, which must then name a host.
	AdvertiseAddr string `yaml:"advertise_addr"`
	// TTL is the registration's lease: a server that dies without deregistering is removed
	// this long after its last keep-alive. Whole seconds, at least 2s.
	TTL time.Duration `yaml:"ttl"`
	// RefreshInterval is how often a gateway tier looks its upstream up again (DNS or etcd).
	RefreshInterval time.Duration `yaml:"refresh_interval"`
}

// EtcdEndpointList returns the etcd endpoints, or nil.
func (d DiscoveryConfig) EtcdEndpointList() []string { return list(d.EtcdEndpoints) }

// Hosts returns the allowed Host names, or nil.
func (g GatewayConfig) Hosts() []string { return list(g.AllowedHosts) }

// Origins returns the allowed CORS origins, or nil.
func (g GatewayConfig) Origins() []string { return list(g.CORSAllowedOrigins) }

// list splits a comma-separated value, dropping blanks; nil when there is nothing.
func list(v string) []string {
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// WALConfig configures the write-ahead log (used when store.data_dir is set).
type WALConfig struct {
	// Fsync is when a write is acknowledged: "always" (after its record is fsynced, with group
	// commit), "interval" (after it is written; fsync every FsyncInterval) or "none".
	Fsync string `yaml:"fsync"`
	// FsyncInterval is the fsync period of the "interval" policy: at most this much is lost on
	// power failure.
	FsyncInterval time.Duration `yaml:"fsync_interval"`
	// SegmentBytes bounds a log segment file.
	SegmentBytes int `yaml:"segment_bytes"`
	// SnapshotBytes bounds the log between automatic snapshots: one starts once the log since
	// the last is as large as the newest snapshot, and at the latest after this much.
	SnapshotBytes int `yaml:"snapshot_bytes"`
}

// LimitsConfig bounds what one request may carry.
type LimitsConfig struct {
	// MaxKeyBytes is the longest accepted key.
	MaxKeyBytes int `yaml:"max_key_bytes"`
	// MaxValueBytes is the largest accepted value.
	MaxValueBytes int `yaml:"max_value_bytes"`
	// MaxBatchEntries is the most entries accepted in one batch.
	MaxBatchEntries int `yaml:"max_batch_entries"`
	// MaxScanEntries is the most items of one Scan page (and a Scan's default limit).
	MaxScanEntries int `yaml:"max_scan_entries"`
	// MaxScanBytes bounds one Scan page's keys and values; a page always holds its first item.
	MaxScanBytes int `yaml:"max_scan_bytes"`
}

// LimiterConfig configures write admission: a token bucket in keys per second whose tokens
// also size BEST_EFFORT chunks and the suggested_batch of responses. These keys can change at
// run time (SIGHUP reloads them).
type LimiterConfig struct {
	// Rate is the refill rate in keys per second; 0 admits everything.
	Rate int `yaml:"rate"`
	// Burst is the bucket's capacity: the largest ATOMIC batch that can ever be admitted.
	Burst int `yaml:"burst"`
	// MaxWait bounds how long a write waits for tokens (the call's deadline bounds it too).
	MaxWait time.Duration `yaml:"max_wait"`
	// MaxChunk bounds a BEST_EFFORT chunk applied at once.
	MaxChunk int `yaml:"max_chunk"`
}

// IdempotencyConfig configures how request_ids of writes are remembered.
type IdempotencyConfig struct {
	// Window is how long a request_id's response is kept for replay.
	Window time.Duration `yaml:"window"`
	// MaxBytes bounds the bytes the records take; when a new record would cross it, the oldest
	// are evicted before their window is over (and their retries run again).
	MaxBytes int `yaml:"max_bytes"`
}

// HotKeysConfig configures the detection of hot keys on the write path (pkg/hotkey).
type HotKeysConfig struct {
	// SampleEvery counts one write in this many; 0 turns detection off.
	SampleEvery int `yaml:"sample_every"`
	// Threshold is the sampled count within Window that makes a key hot: about
	// Threshold × SampleEvery writes.
	Threshold int `yaml:"threshold"`
	// Window is the span counts are kept over.
	Window time.Duration `yaml:"window"`
	// KeepAlive is how long a key stays hot after its count last reached Threshold.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// MaxKeys caps the hot keys kept and reported.
	MaxKeys int `yaml:"max_keys"`
}

// LogConfig configures the server's structured log.
type LogConfig struct {
	// Level is the least severe level logged: debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is the log line format: text or json.
	Format string `yaml:"format"`
}

// TracingConfig configures OpenTelemetry traces: a span per RPC call and HTTP request, a
// PutAll's stages below it, exported over OTLP/HTTP (see docs/operations.md, Tracing).
type TracingConfig struct {
	// Enabled turns tracing on; off, the server makes no spans at all.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/HTTP URL spans are posted to as protobuf (an OpenTelemetry
	// Collector's, or a tracing backend's, /v1/traces; https for TLS).
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the fraction of traces begun here that are recorded, 0 to 1; a call that
	// arrives in a trace (traceparent) follows its caller's decision.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name of the spans.
	ServiceName string `yaml:"service_name"`
}

// minIdempotencyBytes is the least idempotency.max_bytes: room for a few thousand records.
const minIdempotencyBytes = 1 << 20

// envPrefix starts the name of every environment variable this package reads.
const envPrefix = "PUTALLKV_"

// maxHotKeys bounds hot_keys.max_keys: the hot keys are listed whole at the admin endpoint.
const maxHotKeys = 10000

// logLevels are the accepted values of log.level.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Load builds a validated configuration from defaults (a YAML document setting every key:
// the embedded conf.Default), overlaid by the YAML file named by file unless it is "", overlaid
// by the PUTALLKV_<SECTION>_<KEY> variables in environ (os.Environ() format), e.g.
// PUTALLKV_SERVER_ADDR for server.addr. A key absent from the file keeps its default; a key the
// file has but Config does not, or a PUTALLKV_ variable naming no key, is an error, because a
// misspelt setting silently ignored is worse than a refused start.
func Load(defaults []byte, file string, environ []string) (*Config, error) {
	c, err := load(defaults, file, environ)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// load is Load without the validation, so FromArgs can apply flags before validating.
func load(defaults []byte, file string, environ []string) (*Config, error) {
	c := new(Config)
	if err := decode(c, defaults); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decode(c, b); err != nil {
			return nil, fmt.Errorf("config: %s: %w", file, err)
		}
	}
	if err := applyEnv(c, environ); err != nil {
		return nil, err
	}
	return c, nil
}

// envFields maps the environment variable name of every leaf of c to that leaf.
func envFields(c *Config) map[string]field {
	fields := make(map[string]field)
	for _, f := range leaves(c) {
		fields[f.env] = f
	}
	return fields
}

// applyEnv sets in c every PUTALLKV_ variable of environ, in order, so a later duplicate wins.
// It reports every variable that names no key or holds a value of the wrong type.
func applyEnv(c *Config, environ []string) error {
	fields := envFields(c)
	var errs []error
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) {
			continue
		}
		f, ok := fields[name]
		if !ok {
			errs = append(errs, fmt.Errorf("config: environment variable %s names no configuration key", name))
			continue
		}
		if err := setFromString(f.v, val); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (from %s): %w", f.key, name, err))
		}
	}
	return errors.Join(errs...)
}

// durationType is the type of the fields parsed as durations ("10s") rather than integers.
var durationType = reflect.TypeFor[time.Duration]()

// setFromString parses s as the type of v and stores it in v.
func setFromString(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s, got %q", wantForm(v.Type()), s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%s, got %q", wantForm(v.Type()), s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%s, got %q", wantForm(v.Type()), s)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s, got %q", wantForm(v.Type()), s)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("fields of type %s cannot be set from the environment", v.Type())
	}
	return nil
}

// Validate checks every value of c and returns all problems joined, in file order, each as
// "config: <dotted.key>: <what is wrong>, got <value>".
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	addr := func(key, addr string) {
		if err := checkAddr(addr); err != nil {
			bad(key, "%v", err)
		}
	}
	positive := func(key string, n int) {
		if n <= 0 {
			bad(key, "must be positive, got %d", n)
		}
	}
	positiveDuration := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be positive, got %s", d)
		}
	}

	addr("server.addr", c.Server.Addr)
	if c.Server.MaxRequestBytes < 1024 {
		bad("server.max_request_bytes", "must be at least 1024, got %d", c.Server.MaxRequestBytes)
	}
	positiveDuration("server.shutdown_timeout", c.Server.ShutdownTimeout)
	positiveDuration("server.drain_timeout", c.Server.DrainTimeout)
	positive("server.max_connections", c.Server.MaxConnections)
	addr("admin.addr", c.Admin.Addr)
	positive("admin.max_connections", c.Admin.MaxConnections)
	positiveDuration("admin.request_timeout", c.Admin.RequestTimeout)
	if n := c.Store.Shards; n < 1 || n > 1<<16 || n&(n-1) != 0 {
		bad("store.shards", "must be a power of two between 1 and 65536, got %d", n)
	}
	positiveDuration("store.sweep_interval", c.Store.SweepInterval)
	if c.Store.MaxBytes < 0 {
		bad("store.max_bytes", "must be 0 (no quota) or positive, got %d", c.Store.MaxBytes)
	}
	switch c.Store.Engine {
	case "", EngineMemory, EngineRedisCluster:
		if c.Store.Engine != "" && c.Store.DataDir != "" {
			bad("store.data_dir", "is the durable engine's directory, but store.engine is %s: empty it or choose durable, got %q",
				c.Store.Engine, c.Store.DataDir)
		}
	case EngineDurable:
		if c.Store.DataDir == "" {
			bad("store.engine", "durable needs store.data_dir, which is empty")
		}
	default:
		bad("store.engine", "must be memory, durable or redis_cluster (or empty: chosen by store.data_dir), got %q", c.Store.Engine)
	}
	if c.Store.EngineName() == EngineRedisCluster && len(c.Redis.AddrList()) == 0 {
		bad("redis.addrs", "must list the cluster's seed nodes (host:port, comma-separated) when store.engine is redis_cluster")
	}
	for _, a := range c.Redis.AddrList() {
		addr("redis.addrs", a)
	}
	if c.Redis.ReplicasAck < 0 {
		bad("redis.replicas_ack", "must be 0 (no wait) or positive, got %d", c.Redis.ReplicasAck)
	}
	positiveDuration("redis.ack_timeout", c.Redis.AckTimeout)
	positiveDuration("redis.dial_timeout", c.Redis.DialTimeout)
	if (c.Redis.CertFile == "") != (c.Redis.KeyFile == "") {
		bad("redis.cert_file", "and redis.key_file go together: set both or neither")
	}
	if !c.Redis.TLS && c.Redis.CAFile+c.Redis.CertFile+c.Redis.KeyFile != "" {
		bad("redis.tls", "is off, but redis.ca_file, cert_file or key_file is set: turn it on or empty them")
	}
	positive("redis.blocking_pool_size", c.Redis.BlockingPoolSize)
	if c.Redis.Username != "" && c.Redis.Password == "" {
		bad("redis.username", "is set but redis.password is empty (set PUTALLKV_REDIS_PASSWORD)")
	}
	if _, err := wal.ParseSyncPolicy(c.WAL.Fsync); err != nil {
		bad("wal.fsync", "%v", err)
	}
	positiveDuration("wal.fsync_interval", c.WAL.FsyncInterval)
	if c.WAL.SegmentBytes < 1<<16 {
		bad("wal.segment_bytes", "must be at least 65536, got %d", c.WAL.SegmentBytes)
	}
	positive("wal.snapshot_bytes", c.WAL.SnapshotBytes)
	if c.Gateway.Addr != "" {
		addr("gateway.addr", c.Gateway.Addr)
	}
	for _, u := range c.Gateway.Upstreams() {
		addr("gateway.upstream", u)
	}
	if hp, ok := c.Gateway.UpstreamDNS(); ok {
		if host, port, err := net.SplitHostPort(hp); err != nil || host == "" || port == "" {
			bad("gateway.upstream", "must be dns://host:port, got %q", c.Gateway.Upstream)
		}
	}
	if svc, ok := c.Gateway.UpstreamEtcd(); ok {
		if svc == "" || strings.Contains(svc, "/") {
			bad("gateway.upstream", "must be etcd://service (a name without '/'), got %q", c.Gateway.Upstream)
		}
		if len(c.Discovery.EtcdEndpointList()) == 0 {
			bad("discovery.etcd_endpoints", "must list etcd's endpoints when gateway.upstream is %q", c.Gateway.Upstream)
		}
	}
	c.validateDiscovery(bad)
	positive("gateway.max_body_bytes", c.Gateway.MaxBodyBytes)
	positive("gateway.max_connections", c.Gateway.MaxConnections)
	positiveDuration("gateway.idle_timeout", c.Gateway.IdleTimeout)
	positiveDuration("gateway.header_timeout", c.Gateway.HeaderTimeout)
	positiveDuration("gateway.body_timeout", c.Gateway.BodyTimeout)
	positiveDuration("gateway.request_timeout", c.Gateway.RequestTimeout)
	if a := c.Gateway.AccessLog; a != "errors" && a != "all" && a != "off" {
		bad("gateway.access_log", "must be errors, all or off, got %q", a)
	}
	for _, h := range c.Gateway.Hosts() {
		if strings.ContainsAny(h, "/@ ") || h != "*" && strings.Count(h, ":") == 1 {
			bad("gateway.allowed_hosts", "must list host names or addresses without ports or schemes, got %q", h)
		}
	}
	for _, o := range c.Gateway.Origins() {
		if err := checkOrigin(o); err != nil {
			bad("gateway.cors_allowed_origins", "%v", err)
		}
	}
	positive("limits.max_key_bytes", c.Limits.MaxKeyBytes)
	positive("limits.max_value_bytes", c.Limits.MaxValueBytes)
	positive("limits.max_batch_entries", c.Limits.MaxBatchEntries)
	positive("limits.max_scan_entries", c.Limits.MaxScanEntries)
	positive("limits.max_scan_bytes", c.Limits.MaxScanBytes)
	positiveDuration("idempotency.window", c.Idempotency.Window)
	if h := c.HotKeys; h.SampleEvery != 0 {
		positive("hot_keys.sample_every", h.SampleEvery)
		positive("hot_keys.threshold", h.Threshold)
		positiveDuration("hot_keys.window", h.Window)
		positiveDuration("hot_keys.keep_alive", h.KeepAlive)
		if h.MaxKeys < 1 || h.MaxKeys > maxHotKeys {
			bad("hot_keys.max_keys", "must be between 1 and %d, got %d", maxHotKeys, h.MaxKeys)
		}
	}
	if c.Idempotency.MaxBytes < minIdempotencyBytes {
		bad("idempotency.max_bytes", "must be at least %d, got %d", minIdempotencyBytes, c.Idempotency.MaxBytes)
	}
	if c.Limiter.Rate < 0 {
		bad("limiter.rate", "must be 0 (unlimited) or positive, got %d", c.Limiter.Rate)
	}
	positive("limiter.burst", c.Limiter.Burst)
	if c.Limiter.MaxWait < 0 {
		bad("limiter.max_wait", "must not be negative, got %s", c.Limiter.MaxWait)
	}
	positive("limiter.max_chunk", c.Limiter.MaxChunk)
	if _, ok := logLevels[c.Log.Level]; !ok {
		bad("log.level", "must be one of debug, info, warn, error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	errs = append(errs, c.validateSecurity()...)
	errs = append(errs, c.Tracing.validate()...)
	return errors.Join(errs...)
}

// validate checks the tracing section: the endpoint only when tracing is on.
func (t TracingConfig) validate() []error {
	var errs []error
	if t.Enabled {
		if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.Path == "" {
			errs = append(errs, fmt.Errorf("config: tracing.endpoint: must be the OTLP/HTTP URL spans are sent to, "+
				"such as http://127.0.0.1:4318/v1/traces (http or https, a host, the path), got %q", t.Endpoint))
		}
	}
	if !(t.SampleRatio >= 0 && t.SampleRatio <= 1) { // NaN fails too
		errs = append(errs, fmt.Errorf("config: tracing.sample_ratio: must be from 0 to 1 (the fraction of traces recorded), got %v", t.SampleRatio))
	}
	if strings.TrimSpace(t.ServiceName) == "" {
		errs = append(errs, fmt.Errorf("config: tracing.service_name: must name the service in its spans, got %q", t.ServiceName))
	}
	return errs
}

// validateDiscovery checks the discovery section, reporting each problem to bad.
func (c *Config) validateDiscovery(bad func(key, format string, args ...any)) {
	d := c.Discovery
	for _, e := range d.EtcdEndpointList() {
		if err := checkAddr(e); err != nil {
			bad("discovery.etcd_endpoints", "%v", err)
		}
	}
	if (d.EtcdUsername == "") != (d.EtcdPasswordFile == "") {
		bad("discovery.etcd_password_file", "discovery.etcd_username and discovery.etcd_password_file go together, got username %q and file %q",
			d.EtcdUsername, d.EtcdPasswordFile)
	}
	if d.Service == "" || strings.Contains(d.Service, "/") {
		bad("discovery.service", "must be a name without '/', got %q", d.Service)
	}
	if d.TTL < 2*time.Second || d.TTL%time.Second != 0 {
		bad("discovery.ttl", "must be whole seconds, at least 2s, got %s", d.TTL)
	}
	if d.RefreshInterval <= 0 {
		bad("discovery.refresh_interval", "must be positive, got %s", d.RefreshInterval)
	}
	registers := len(d.EtcdEndpointList()) > 0 && c.Gateway.Upstream == ""
	advertised, key := c.Server.Addr, "server.addr"
	if d.AdvertiseAddr != "" {
		advertised, key = d.AdvertiseAddr, "discovery.advertise_addr"
		if err := checkAddr(d.AdvertiseAddr); err != nil {
			bad(key, "%v", err)
			return
		}
	}
	if !registers {
		return
	}
	host, port, err := net.SplitHostPort(advertised)
	if err != nil {
		return // server.addr's own check reports it
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		bad(key, "is registered in etcd (discovery.etcd_endpoints is set), so it must name a host clients can reach; "+
			"set discovery.advertise_addr, got %q", advertised)
	}
	if key == "discovery.advertise_addr" && port == "0" {
		bad(key, "must have a port other than 0, got %q", advertised)
	}
}

// checkOrigin reports whether o is an origin as browsers send it (scheme://host[:port], no
// path) or "*".
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("must list origins such as https://app.example:8443 (scheme, host, optional port), or *, got %q", o)
	}
	return nil
}

// checkAddr reports whether addr is a listen address: host:port with a numeric port (the host
// may be empty, meaning every interface).
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", addr)
	}
	return nil
}

// Logger returns a structured logger writing to w at the level and in the format of c.Log.
// It expects a validated c; an unknown level logs at info and an unknown format as text.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevels[c.Log.Level]}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
