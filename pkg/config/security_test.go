package config

import (
	"strings"
	"testing"
)

// TestNonLoopbackNeedsAuth checks that without tokens every listener must be on loopback,
// that the refusal names the key, and that a token file or an explicit auth.disabled lifts it.
func TestNonLoopbackNeedsAuth(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" for valid
	}{
		{"defaults are loopback", func(*Config) {}, ""},
		{"localhost and other loopback IPs", func(c *Config) {
			c.Server.Addr, c.Gateway.Addr, c.Admin.Addr = "localhost:1", "127.9.9.9:2", "[::1]:3"
		}, ""},
		{"server on every interface", func(c *Config) { c.Server.Addr = ":8888" },
			`config: server.addr: ":8888" is not a loopback address and no tokens are configured: set auth.token_file`},
		{"gateway on a public IP", func(c *Config) { c.Gateway.Addr = "192.0.2.1:8080" }, "config: gateway.addr:"},
		{"admin on 0.0.0.0", func(c *Config) { c.Admin.Addr = "0.0.0.0:9100" }, "config: admin.addr:"},
		{"admin on a host name", func(c *Config) { c.Admin.Addr = "kv.example:9100" }, "config: admin.addr:"},
		{"no gateway", func(c *Config) { c.Gateway.Addr = "" }, ""},
		{"tokens configured", func(c *Config) { c.Server.Addr, c.Auth.TokenFile = ":8888", "/etc/putallkv/tokens" }, ""},
		{"disabled on purpose", func(c *Config) { c.Server.Addr, c.Auth.Disabled = ":8888", true }, ""},
		{"a tier has no RPC listener", func(c *Config) { c.Server.Addr, c.Gateway.Upstream = ":8888", "10.0.0.1:8888" }, ""},
		{"disabled with tokens", func(c *Config) { c.Auth.Disabled, c.Auth.TokenFile = true, "t" }, "config: auth.disabled:"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, "config: tls.key_file:"},
		{"client CA without TLS", func(c *Config) { c.TLS.ClientCAFile = "ca.pem" }, "config: tls.client_ca_file:"},
		{"upstream CA without a tier", func(c *Config) { c.TLS.UpstreamCAFile = "ca.pem" }, "config: tls.upstream_ca_file:"},
		{"TLS", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile = "c.pem", "k.pem", "ca.pem" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults(t)
			tt.mutate(c)
			err := c.Validate()
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate: %v; want %q", err, tt.wantErr)
			}
		})
	}
}
