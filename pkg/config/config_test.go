package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/putallkv/putallkv/conf"
)

// defaults loads conf.Default alone, failing the test if it does not load and validate.
func defaults(t *testing.T) *Config {
	t.Helper()
	c, err := Load(conf.Default, "", nil)
	if err != nil {
		t.Fatalf("Load(conf.Default): %v", err)
	}
	return c
}

// writeFile writes body to a fresh file in a temporary directory and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "putallkv.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c := defaults(t)
	want := Config{
		Server:      ServerConfig{Addr: "127.0.0.1:8888", MaxRequestBytes: 8 << 20, DrainTimeout: 10 * time.Second, ShutdownTimeout: 10 * time.Second, MaxConnections: 1024},
		Admin:       AdminConfig{Addr: "127.0.0.1:9100", MaxConnections: 16, RequestTimeout: time.Minute},
		Store:       StoreConfig{Shards: 256, SweepInterval: time.Second, MaxBytes: 1 << 30},
		Limits:      LimitsConfig{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20, MaxBatchEntries: 1000, MaxScanEntries: 1000, MaxScanBytes: 4 << 20},
		Idempotency: IdempotencyConfig{Window: 10 * time.Minute, MaxBytes: 64 << 20},
		HotKeys:     HotKeysConfig{SampleEvery: 100, Threshold: 500, Window: time.Minute, KeepAlive: time.Minute, MaxKeys: 64},
		Limiter:     LimiterConfig{Rate: 0, Burst: 10000, MaxWait: 100 * time.Millisecond, MaxChunk: 1000},
		Gateway: GatewayConfig{Addr: "127.0.0.1:8080", MaxBodyBytes: 8 << 20, MaxConnections: 1024, IdleTimeout: time.Minute,
			HeaderTimeout: 10 * time.Second, BodyTimeout: time.Minute, RequestTimeout: 10 * time.Second, AccessLog: "errors"},
		WAL:       WALConfig{Fsync: "always", FsyncInterval: 10 * time.Millisecond, SegmentBytes: 64 << 20, SnapshotBytes: 256 << 20},
		Redis:     RedisConfig{ReplicasAck: 1, AckTimeout: time.Second, DialTimeout: 5 * time.Second, BlockingPoolSize: 1024},
		Discovery: DiscoveryConfig{Service: "putallkv", TTL: 10 * time.Second, RefreshInterval: 5 * time.Second},
		Log:       LogConfig{Level: "info", Format: "text"},
		TLS:       TLSConfig{Gateway: true, Admin: true},
		Tracing:   TracingConfig{Endpoint: "http://127.0.0.1:4318/v1/traces", SampleRatio: 1, ServiceName: "putallkv"},
	}
	if *c != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
}

// TestDefaultsSetEveryKey keeps conf/putallkv.yaml in step with Config: a field added to
// Config without a default in the file fails here.
func TestDefaultsSetEveryKey(t *testing.T) {
	var file map[string]map[string]any
	if err := yaml.Unmarshal(conf.Default, &file); err != nil {
		t.Fatal(err)
	}
	var c Config
	for name, f := range envFields(&c) {
		section, key, _ := strings.Cut(f.key, ".")
		if _, ok := file[section][key]; !ok {
			t.Errorf("conf/putallkv.yaml does not set %s (%s)", f.key, name)
		}
	}
}

func TestFileOverlay(t *testing.T) {
	tests := []struct {
		name string
		body string
		want func(*Config)
	}{
		{"empty file keeps defaults", "", func(*Config) {}},
		{"comments only keep defaults", "# nothing\n", func(*Config) {}},
		{
			"some keys replaced, others kept",
			"server:\n  addr: 0.0.0.0:7000\nstore:\n  sweep_interval: 250ms\nlog:\n  format: json\nauth:\n  disabled: true\n",
			func(c *Config) {
				c.Server.Addr = "0.0.0.0:7000"
				c.Auth.Disabled = true
				c.Store.SweepInterval = 250 * time.Millisecond
				c.Log.Format = "json"
			},
		},
		{
			"an empty key keeps its default; aliases resolve",
			"server:\n  shutdown_timeout:\nlimits:\n  max_key_bytes: &n 50\n  max_batch_entries: *n\n",
			func(c *Config) { c.Limits.MaxKeyBytes, c.Limits.MaxBatchEntries = 50, 50 },
		},
		{
			"ints and durations",
			"limits:\n  max_batch_entries: 50\nidempotency:\n  window: 1h30m\n  max_bytes: 2097152\n",
			func(c *Config) {
				c.Limits.MaxBatchEntries = 50
				c.Idempotency.Window = 90 * time.Minute
				c.Idempotency.MaxBytes = 2 << 20
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := defaults(t)
			tt.want(want)
			got, err := Load(conf.Default, writeFile(t, tt.body), nil)
			if err != nil {
				t.Fatal(err)
			}
			if *got != *want {
				t.Errorf("got %+v\nwant %+v", *got, *want)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr []string // substrings of the error
	}{
		{"unknown key in a section", "server:\n  adress: 1.2.3.4:5\n", []string{"adress", "line 2"}},
		{"unknown section", "cache:\n  size: 1\n", []string{"cache"}},
		{"string for an int", "store:\n  shards: many\n", []string{`line 2: store.shards: want an integer, got "many"`}},
		{"duration without unit", "server:\n  shutdown_timeout: 10\n",
			[]string{`line 2: server.shutdown_timeout: want a duration such as 10s or 1m30s, got "10"`}},
		{"bad duration", "store:\n  sweep_interval: soon\n", []string{`store.sweep_interval: want a duration`, `"soon"`}},
		{"list for an int", "limits:\n  max_key_bytes: [1, 2]\n", []string{"line 2: limits.max_key_bytes: want an integer, got a list"}},
		{"word for a bool", "auth:\n  disabled: sure\n", []string{`line 2: auth.disabled: want true or false, got "sure"`}},
		{"word for a number", "tracing:\n  sample_ratio: all\n", []string{`line 2: tracing.sample_ratio: want a number such as 0.25, got "all"`}},
		{"section not a mapping", "server: 5\n", []string{`line 1: server: want a section of key: value lines, got "5"`}},
		{"top level not a mapping", "- server\n", []string{"line 1: want sections"}},
		{"key set twice", "store:\n  shards: 4\n  shards: 8\n", []string{"line 3: store.shards is set twice (first on line 2)"}},
		{"every problem reported", "store:\n  shards: x\nwal:\n  fsync_interval: 5\n",
			[]string{"line 2: store.shards:", "line 4: wal.fsync_interval:"}},
		{"not YAML", "server: [\n", []string{"yaml"}},
		{"invalid value", "store:\n  shards: 100\n", []string{"store.shards", "got 100"}},
		{"removed key", "idempotency:\n  max_records: 100000\n", []string{"max_records", "line 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, tt.body)
			_, err := Load(conf.Default, file, nil)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := Load(conf.Default, filepath.Join(t.TempDir(), "absent.yaml"), nil)
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want os.ErrNotExist", err)
		}
	})
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    func(*Config)
	}{
		{"no variables", nil, func(*Config) {}},
		{"unrelated variables ignored", []string{"PATH=/bin", "HOME=/root", "PUTALLKVX=1", "putallkv_server_addr=x", "NOEQUALS"}, func(*Config) {}},
		{"string", []string{"PUTALLKV_SERVER_ADDR=127.0.0.2:9999"}, func(c *Config) { c.Server.Addr = "127.0.0.2:9999" }},
		{"bool", []string{"PUTALLKV_AUTH_METRICS_OPEN=true"}, func(c *Config) { c.Auth.MetricsOpen = true }},
		{"int", []string{"PUTALLKV_LIMITS_MAX_KEY_BYTES=2048"}, func(c *Config) { c.Limits.MaxKeyBytes = 2048 }},
		{"duration", []string{"PUTALLKV_IDEMPOTENCY_WINDOW=1h"}, func(c *Config) { c.Idempotency.Window = time.Hour }},
		{"number", []string{"PUTALLKV_TRACING_SAMPLE_RATIO=0.05"}, func(c *Config) { c.Tracing.SampleRatio = 0.05 }},
		{"tracing", []string{"PUTALLKV_TRACING_ENABLED=true", "PUTALLKV_TRACING_ENDPOINT=https://otel.internal:4318/v1/traces",
			"PUTALLKV_TRACING_SERVICE_NAME=kv-eu"}, func(c *Config) {
			c.Tracing.Enabled, c.Tracing.Endpoint, c.Tracing.ServiceName = true, "https://otel.internal:4318/v1/traces", "kv-eu"
		}},
		{"later duplicate wins", []string{"PUTALLKV_STORE_SHARDS=8", "PUTALLKV_STORE_SHARDS=16"}, func(c *Config) { c.Store.Shards = 16 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := defaults(t)
			tt.want(want)
			got, err := Load(conf.Default, "", tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			if *got != *want {
				t.Errorf("got %+v\nwant %+v", *got, *want)
			}
		})
	}
}

// TestEnvEveryKey sets every key from the environment, each to its default written as text,
// so a field of a type the environment cannot set fails here, as does a name derivation that
// breaks the round trip.
func TestEnvEveryKey(t *testing.T) {
	want := defaults(t)
	fields := envFields(want)
	var environ []string
	for name, f := range fields {
		environ = append(environ, fmt.Sprintf("%s=%v", name, f.v.Interface()))
	}
	got, err := Load(conf.Default, "", environ)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Errorf("got %+v\nwant %+v", *got, *want)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		wantErr []string
	}{
		{"unknown key", []string{"PUTALLKV_SERVER_ADRESS=x:1"}, []string{"PUTALLKV_SERVER_ADRESS"}},
		{"unknown section", []string{"PUTALLKV_CACHE_SIZE=1"}, []string{"PUTALLKV_CACHE_SIZE"}},
		{"prefix alone", []string{"PUTALLKV_=1"}, []string{"PUTALLKV_"}},
		{"not an int", []string{"PUTALLKV_STORE_SHARDS=many"}, []string{"store.shards", "PUTALLKV_STORE_SHARDS", "many"}},
		{"not a duration", []string{"PUTALLKV_STORE_SWEEP_INTERVAL=5"}, []string{"store.sweep_interval", `"5"`}},
		{"not a bool", []string{"PUTALLKV_AUTH_DISABLED=sure"}, []string{"auth.disabled", `want true or false, got "sure"`}},
		{"not a number", []string{"PUTALLKV_TRACING_SAMPLE_RATIO=half"}, []string{"tracing.sample_ratio", `want a number such as 0.25, got "half"`}},
		{"int overflow", []string{"PUTALLKV_LIMITS_MAX_VALUE_BYTES=99999999999999999999"}, []string{"limits.max_value_bytes"}},
		{"all reported", []string{"PUTALLKV_A_B=1", "PUTALLKV_C_D=2"}, []string{"PUTALLKV_A_B", "PUTALLKV_C_D"}},
		{"value split at the first =", []string{"PUTALLKV_LOG_LEVEL=de=bug"}, []string{"log.level", `"de=bug"`}},
		{"invalid value", []string{"PUTALLKV_LOG_FORMAT=xml"}, []string{"log.format", `"xml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(conf.Default, "", tt.environ)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" for valid; else a substring, starting with the dotted key
	}{
		{"defaults", func(*Config) {}, ""},
		{"addr without host", func(c *Config) { c.Server.Addr = ":8888"; c.Auth.Disabled = true }, ""},
		{"addr port 0", func(c *Config) { c.Admin.Addr = "127.0.0.1:0" }, ""},
		{"addr IPv6", func(c *Config) { c.Server.Addr = "[::1]:8888" }, ""},
		{"addr without port", func(c *Config) { c.Server.Addr = "127.0.0.1" }, "config: server.addr: must be host:port"},
		{"addr empty", func(c *Config) { c.Server.Addr = "" }, "config: server.addr:"},
		{"addr port not a number", func(c *Config) { c.Server.Addr = "localhost:http" }, "config: server.addr: port"},
		{"addr port too big", func(c *Config) { c.Server.Addr = "localhost:65536" }, "config: server.addr: port"},
		{"admin addr", func(c *Config) { c.Admin.Addr = "nohost" }, "config: admin.addr:"},
		{"max_request_bytes minimum", func(c *Config) { c.Server.MaxRequestBytes = 1024 }, ""},
		{"max_request_bytes too small", func(c *Config) { c.Server.MaxRequestBytes = 1023 }, "config: server.max_request_bytes: must be at least 1024, got 1023"},
		{"drain_timeout zero", func(c *Config) { c.Server.DrainTimeout = 0 }, "config: server.drain_timeout: must be positive, got 0s"},
		{"shutdown_timeout zero", func(c *Config) { c.Server.ShutdownTimeout = 0 }, "config: server.shutdown_timeout: must be positive"},
		{"shards 1", func(c *Config) { c.Store.Shards = 1 }, ""},
		{"shards 65536", func(c *Config) { c.Store.Shards = 65536 }, ""},
		{"shards 100", func(c *Config) { c.Store.Shards = 100 }, "config: store.shards: must be a power of two between 1 and 65536, got 100"},
		{"shards 0", func(c *Config) { c.Store.Shards = 0 }, "config: store.shards:"},
		{"shards negative", func(c *Config) { c.Store.Shards = -4 }, "config: store.shards:"},
		{"shards 131072", func(c *Config) { c.Store.Shards = 131072 }, "config: store.shards:"},
		{"sweep_interval negative", func(c *Config) { c.Store.SweepInterval = -time.Second }, "config: store.sweep_interval: must be positive, got -1s"},
		{"max_key_bytes zero", func(c *Config) { c.Limits.MaxKeyBytes = 0 }, "config: limits.max_key_bytes: must be positive"},
		{"max_value_bytes zero", func(c *Config) { c.Limits.MaxValueBytes = 0 }, "config: limits.max_value_bytes: must be positive"},
		{"max_batch_entries negative", func(c *Config) { c.Limits.MaxBatchEntries = -1 }, "config: limits.max_batch_entries: must be positive, got -1"},
		{"max_scan_entries zero", func(c *Config) { c.Limits.MaxScanEntries = 0 }, "config: limits.max_scan_entries: must be positive, got 0"},
		{"max_scan_bytes negative", func(c *Config) { c.Limits.MaxScanBytes = -1 }, "config: limits.max_scan_bytes: must be positive, got -1"},
		{"window zero", func(c *Config) { c.Idempotency.Window = 0 }, "config: idempotency.window: must be positive"},
		{"idempotency max_bytes minimum", func(c *Config) { c.Idempotency.MaxBytes = 1 << 20 }, ""},
		{"idempotency max_bytes too small", func(c *Config) { c.Idempotency.MaxBytes = 1<<20 - 1 }, "config: idempotency.max_bytes: must be at least 1048576, got 1048575"},
		{"store max_bytes none", func(c *Config) { c.Store.MaxBytes = 0 }, ""},
		{"hot keys off", func(c *Config) { c.HotKeys = HotKeysConfig{} }, ""},
		{"hot keys threshold zero", func(c *Config) { c.HotKeys.Threshold = 0 }, "config: hot_keys.threshold: must be positive, got 0"},
		{"hot keys sample_every negative", func(c *Config) { c.HotKeys.SampleEvery = -1 }, "config: hot_keys.sample_every: must be positive, got -1"},
		{"hot keys keep_alive zero", func(c *Config) { c.HotKeys.KeepAlive = 0 }, "config: hot_keys.keep_alive: must be positive"},
		{"hot keys max_keys too many", func(c *Config) { c.HotKeys.MaxKeys = 10001 }, "config: hot_keys.max_keys: must be between 1 and 10000, got 10001"},
		{"engine by data_dir", func(c *Config) { c.Store.DataDir = "/var/lib/putallkv" }, ""},
		{"engine memory", func(c *Config) { c.Store.Engine = "memory" }, ""},
		{"engine durable", func(c *Config) { c.Store.Engine = "durable"; c.Store.DataDir = "/var/lib/putallkv" }, ""},
		{"engine durable without dir", func(c *Config) { c.Store.Engine = "durable" }, "config: store.engine: durable needs store.data_dir"},
		{"engine memory with dir", func(c *Config) { c.Store.Engine = "memory"; c.Store.DataDir = "/d" }, "config: store.data_dir: is the durable engine's directory, but store.engine is memory"},
		{"engine unknown", func(c *Config) { c.Store.Engine = "etcd" }, `config: store.engine: must be memory, durable or redis_cluster (or empty: chosen by store.data_dir), got "etcd"`},
		{"engine redis_cluster", func(c *Config) { c.Store.Engine = "redis_cluster"; c.Redis.Addrs = "10.0.0.1:7000, 10.0.0.2:7000" }, ""},
		{"engine redis_cluster without addrs", func(c *Config) { c.Store.Engine = "redis_cluster" }, "config: redis.addrs: must list the cluster's seed nodes"},
		{"engine redis_cluster with dir", func(c *Config) { c.Store.Engine = "redis_cluster"; c.Redis.Addrs = "a:1"; c.Store.DataDir = "/d" }, "config: store.data_dir:"},
		{"redis addrs bad", func(c *Config) { c.Redis.Addrs = "a:1,nonsense" }, "config: redis.addrs: must be host:port"},
		{"redis replicas_ack none", func(c *Config) { c.Redis.ReplicasAck = 0 }, ""},
		{"redis replicas_ack negative", func(c *Config) { c.Redis.ReplicasAck = -1 }, "config: redis.replicas_ack: must be 0 (no wait) or positive, got -1"},
		{"redis ack_timeout zero", func(c *Config) { c.Redis.AckTimeout = 0 }, "config: redis.ack_timeout: must be positive"},
		{"redis dial_timeout zero", func(c *Config) { c.Redis.DialTimeout = 0 }, "config: redis.dial_timeout: must be positive"},
		{"redis blocking_pool_size zero", func(c *Config) { c.Redis.BlockingPoolSize = 0 }, "config: redis.blocking_pool_size: must be positive, got 0"},
		{"redis password alone", func(c *Config) { c.Redis.Password = "p" }, ""},
		{"redis tls", func(c *Config) { c.Redis.TLS, c.Redis.CAFile, c.Redis.CertFile, c.Redis.KeyFile = true, "ca", "c", "k" }, ""},
		{"redis tls cert without key", func(c *Config) { c.Redis.TLS, c.Redis.CertFile = true, "c" }, "config: redis.cert_file: and redis.key_file go together"},
		{"redis tls files without tls", func(c *Config) { c.Redis.CAFile = "ca" }, "config: redis.tls: is off, but redis.ca_file"},
		{"redis username without password", func(c *Config) { c.Redis.Username = "u" }, "config: redis.username: is set but redis.password is empty"},
		{"store max_bytes negative", func(c *Config) { c.Store.MaxBytes = -1 }, "config: store.max_bytes: must be 0 (no quota) or positive, got -1"},
		{"negative rate", func(c *Config) { c.Limiter.Rate = -1 }, "config: limiter.rate: must be 0 (unlimited) or positive"},
		{"zero burst", func(c *Config) { c.Limiter.Burst = 0 }, "config: limiter.burst: must be positive"},
		{"negative max_wait", func(c *Config) { c.Limiter.MaxWait = -time.Second }, "config: limiter.max_wait: must not be negative"},
		{"zero max_chunk", func(c *Config) { c.Limiter.MaxChunk = 0 }, "config: limiter.max_chunk: must be positive"},
		{"bad upstream", func(c *Config) { c.Gateway.Upstream = "a:1,nonsense" }, "config: gateway.upstream:"},
		{"dns upstream", func(c *Config) { c.Gateway.Upstream = "DNS://kv.internal:8888" }, ""},
		{"dns upstream without port", func(c *Config) { c.Gateway.Upstream = "dns://kv.internal" }, `config: gateway.upstream: must be dns://host:port, got "dns://kv.internal"`},
		{"etcd upstream", func(c *Config) { c.Gateway.Upstream = "etcd://putallkv"; c.Discovery.EtcdEndpoints = "10.0.0.9:2379" }, ""},
		{"etcd upstream without endpoints", func(c *Config) { c.Gateway.Upstream = "etcd://putallkv" }, "config: discovery.etcd_endpoints: must list etcd's endpoints"},
		{"etcd upstream without service", func(c *Config) { c.Gateway.Upstream = "etcd://"; c.Discovery.EtcdEndpoints = "e:2379" }, `config: gateway.upstream: must be etcd://service`},
		{"registers", func(c *Config) { c.Discovery.EtcdEndpoints = "e1:2379, e2:2379" }, ""},
		{"registers every interface", func(c *Config) { c.Discovery.EtcdEndpoints = "e:2379"; c.Server.Addr = ":8888" }, `config: server.addr: is registered in etcd`},
		{"registers advertised", func(c *Config) {
			c.Discovery.EtcdEndpoints, c.Server.Addr, c.Discovery.AdvertiseAddr = "e:2379", "0.0.0.0:8888", "10.0.0.5:8888"
			c.Auth.Disabled = true
		}, ""},
		{"advertise port 0", func(c *Config) { c.Discovery.EtcdEndpoints, c.Discovery.AdvertiseAddr = "e:2379", "10.0.0.5:0" }, "config: discovery.advertise_addr: must have a port other than 0"},
		{"bad etcd endpoint", func(c *Config) { c.Discovery.EtcdEndpoints = "e" }, "config: discovery.etcd_endpoints: must be host:port"},
		{"ttl fraction", func(c *Config) { c.Discovery.TTL = 2500 * time.Millisecond }, "config: discovery.ttl: must be whole seconds, at least 2s, got 2.5s"},
		{"ttl short", func(c *Config) { c.Discovery.TTL = time.Second }, "config: discovery.ttl:"},
		{"service with slash", func(c *Config) { c.Discovery.Service = "a/b" }, "config: discovery.service: must be a name without '/'"},
		{"refresh zero", func(c *Config) { c.Discovery.RefreshInterval = 0 }, "config: discovery.refresh_interval: must be positive"},
		{"etcd credentials", func(c *Config) {
			c.Discovery.EtcdUsername, c.Discovery.EtcdPasswordFile = "node", "/etc/putallkv/etcd.pass"
		}, ""},
		{"etcd user without password", func(c *Config) { c.Discovery.EtcdUsername = "node" }, "config: discovery.etcd_password_file: discovery.etcd_username and discovery.etcd_password_file go together"},
		{"bad fsync", func(c *Config) { c.WAL.Fsync = "sometimes" }, "config: wal.fsync: must be always, interval or none"},
		{"small segment", func(c *Config) { c.WAL.SegmentBytes = 10 }, "config: wal.segment_bytes: must be at least 65536"},
		{"log level", func(c *Config) { c.Log.Level = "trace" }, `config: log.level: must be one of debug, info, warn, error, got "trace"`},
		{"log level case", func(c *Config) { c.Log.Level = "INFO" }, "config: log.level:"},
		{"log format", func(c *Config) { c.Log.Format = "logfmt" }, `config: log.format: must be text or json, got "logfmt"`},
		{"server max_connections", func(c *Config) { c.Server.MaxConnections = 0 }, "config: server.max_connections: must be positive"},
		{"admin max_connections", func(c *Config) { c.Admin.MaxConnections = -1 }, "config: admin.max_connections: must be positive"},
		{"admin request_timeout", func(c *Config) { c.Admin.RequestTimeout = 0 }, "config: admin.request_timeout: must be positive"},
		{"gateway max_connections", func(c *Config) { c.Gateway.MaxConnections = 0 }, "config: gateway.max_connections: must be positive"},
		{"gateway idle_timeout", func(c *Config) { c.Gateway.IdleTimeout = 0 }, "config: gateway.idle_timeout: must be positive"},
		{"gateway header_timeout", func(c *Config) { c.Gateway.HeaderTimeout = -1 }, "config: gateway.header_timeout: must be positive"},
		{"gateway body_timeout", func(c *Config) { c.Gateway.BodyTimeout = 0 }, "config: gateway.body_timeout: must be positive"},
		{"gateway request_timeout", func(c *Config) { c.Gateway.RequestTimeout = 0 }, "config: gateway.request_timeout: must be positive"},
		{"allowed hosts", func(c *Config) { c.Gateway.AllowedHosts = "kv.internal, ::1, 10.0.0.7,*" }, ""},
		{"allowed host with port", func(c *Config) { c.Gateway.AllowedHosts = "kv.internal:8080" }, "config: gateway.allowed_hosts: must list host names"},
		{"allowed host as URL", func(c *Config) { c.Gateway.AllowedHosts = "http://kv" }, "config: gateway.allowed_hosts:"},
		{"origins", func(c *Config) { c.Gateway.CORSAllowedOrigins = "https://app.example:8443,http://localhost:3000" }, ""},
		{"origin any", func(c *Config) { c.Gateway.CORSAllowedOrigins = "*" }, ""},
		{"origin with path", func(c *Config) { c.Gateway.CORSAllowedOrigins = "https://app.example/" }, "config: gateway.cors_allowed_origins: must list origins"},
		{"origin without scheme", func(c *Config) { c.Gateway.CORSAllowedOrigins = "app.example" }, "config: gateway.cors_allowed_origins:"},
		{"tracing on", func(c *Config) { c.Tracing.Enabled = true }, ""},
		{"tracing off ignores the endpoint", func(c *Config) { c.Tracing.Endpoint = "" }, ""},
		{"tracing endpoint https", func(c *Config) { c.Tracing.Enabled, c.Tracing.Endpoint = true, "https://otel.example/v1/traces" }, ""},
		{"tracing endpoint empty", func(c *Config) { c.Tracing.Enabled, c.Tracing.Endpoint = true, "" },
			`config: tracing.endpoint: must be the OTLP/HTTP URL spans are sent to, such as http://127.0.0.1:4318/v1/traces (http or https, a host, the path), got ""`},
		{"tracing endpoint without path", func(c *Config) { c.Tracing.Enabled, c.Tracing.Endpoint = true, "http://127.0.0.1:4318" }, "config: tracing.endpoint:"},
		{"tracing endpoint host:port", func(c *Config) { c.Tracing.Enabled, c.Tracing.Endpoint = true, "127.0.0.1:4318" }, "config: tracing.endpoint:"},
		{"tracing endpoint grpc", func(c *Config) { c.Tracing.Enabled, c.Tracing.Endpoint = true, "grpc://127.0.0.1:4317" }, "config: tracing.endpoint:"},
		{"tracing sample_ratio 0", func(c *Config) { c.Tracing.SampleRatio = 0 }, ""},
		{"tracing sample_ratio over 1", func(c *Config) { c.Tracing.SampleRatio = 1.5 }, "config: tracing.sample_ratio: must be from 0 to 1 (the fraction of traces recorded), got 1.5"},
		{"tracing sample_ratio negative", func(c *Config) { c.Tracing.SampleRatio = -0.1 }, "config: tracing.sample_ratio:"},
		{"tracing sample_ratio NaN", func(c *Config) { c.Tracing.SampleRatio = math.NaN() }, "config: tracing.sample_ratio:"},
		{"tracing service_name", func(c *Config) { c.Tracing.ServiceName = " " }, `config: tracing.service_name: must name the service in its spans, got " "`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults(t)
			tt.mutate(c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate: nil, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate: %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := defaults(t)
	c.Store.Shards = 3
	c.Log.Format = "xml"
	c.Server.Addr = "x"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate: nil")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"config: server.addr:", "config: store.shards:", "config: log.format:"}
	if len(lines) != len(want) {
		t.Fatalf("Validate reported %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestLogger(t *testing.T) {
	tests := []struct {
		level, format string
		wantDebug     bool
		wantInfo      bool
	}{
		{"debug", "text", true, true},
		{"info", "json", false, true},
		{"warn", "text", false, false},
		{"error", "json", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			c := defaults(t)
			c.Log.Level, c.Log.Format = tt.level, tt.format
			var buf bytes.Buffer
			l := c.Logger(&buf)
			l.Debug("d")
			l.Info("i")
			l.Error("e", "k", "v")
			out := buf.String()
			if got := strings.Contains(out, "DEBUG"); got != tt.wantDebug {
				t.Errorf("debug logged = %v, want %v:\n%s", got, tt.wantDebug, out)
			}
			if got := strings.Contains(out, "INFO"); got != tt.wantInfo {
				t.Errorf("info logged = %v, want %v:\n%s", got, tt.wantInfo, out)
			}
			last := out[strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n")+1:]
			var rec map[string]any
			isJSON := json.Unmarshal([]byte(last), &rec) == nil
			if isJSON != (tt.format == "json") {
				t.Errorf("format %s, line %q parses as JSON: %v", tt.format, last, isJSON)
			}
			if isJSON && rec["k"] != "v" {
				t.Errorf("JSON line %q lacks k=v", last)
			}
		})
	}
}

func TestFromArgsPrecedence(t *testing.T) {
	file := writeFile(t, "server:\n  addr: 127.0.0.1:1001\nadmin:\n  addr: 127.0.0.1:2001\nstore:\n  shards: 8\n")
	tests := []struct {
		name          string
		args, environ []string
		wantAddr      string
		wantAdminAddr string
		wantShards    int
	}{
		{"defaults", nil, nil, "127.0.0.1:8888", "127.0.0.1:9100", 256},
		{"file over defaults", []string{"-conf", file}, nil, "127.0.0.1:1001", "127.0.0.1:2001", 8},
		{
			"env over file",
			[]string{"-conf", file},
			[]string{"PUTALLKV_SERVER_ADDR=127.0.0.1:1002", "PUTALLKV_STORE_SHARDS=16"},
			"127.0.0.1:1002", "127.0.0.1:2001", 16,
		},
		{
			"flags over env",
			[]string{"-conf", file, "-addr", "127.0.0.1:1003", "-admin-addr=127.0.0.1:2003"},
			[]string{"PUTALLKV_SERVER_ADDR=127.0.0.1:1002", "PUTALLKV_ADMIN_ADDR=127.0.0.1:2002"},
			"127.0.0.1:1003", "127.0.0.1:2003", 8,
		},
		{
			"flag fixes an invalid env value",
			[]string{"-addr", "localhost:1004"},
			[]string{"PUTALLKV_SERVER_ADDR=invalid"},
			"localhost:1004", "127.0.0.1:9100", 256,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromArgs(conf.Default, tt.args, tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			if c.Server.Addr != tt.wantAddr || c.Admin.Addr != tt.wantAdminAddr || c.Store.Shards != tt.wantShards {
				t.Errorf("server.addr, admin.addr, store.shards = %q, %q, %d; want %q, %q, %d",
					c.Server.Addr, c.Admin.Addr, c.Store.Shards, tt.wantAddr, tt.wantAdminAddr, tt.wantShards)
			}
		})
	}
}

func TestFromArgsErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		wantErr string
	}{
		{"flag value invalid", []string{"-admin-addr", "nowhere"}, nil, "config: admin.addr:"},
		{"explicit empty flag applied", []string{"-addr="}, nil, "config: server.addr:"},
		{"stray argument", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"missing conf file", []string{"-conf", "/nonexistent/putallkv.yaml"}, nil, "/nonexistent/putallkv.yaml"},
		{"unknown env", nil, []string{"PUTALLKV_NOPE=1"}, "PUTALLKV_NOPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromArgs(conf.Default, tt.args, tt.environ)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("FromArgs: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := RegisterFlags(fs)
	if err := fs.Parse([]string{"-conf", "x.yaml", "-admin-addr", ":1"}); err != nil {
		t.Fatal(err)
	}
	if f.File() != "x.yaml" {
		t.Errorf("File() = %q, want x.yaml", f.File())
	}
	c := defaults(t)
	f.Apply(c)
	if c.Server.Addr != "127.0.0.1:8888" || c.Admin.Addr != ":1" {
		t.Errorf("after Apply: server.addr %q, admin.addr %q; want the default and \":1\"", c.Server.Addr, c.Admin.Addr)
	}
}
