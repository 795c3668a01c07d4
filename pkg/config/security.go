package config

import (
	"fmt"
	"net"
)

// AuthConfig configures who may call: bearer tokens with roles (see package auth).
type AuthConfig struct {
	// TokenFile holds the hashes of the tokens in force and their roles, one a line
	// ("sha256:HEX ROLE NAME"; `putallctl token` mints one). SIGHUP reloads it. Empty means
	// no tokens: then every listener must be on a loopback address unless Disabled.
	TokenFile string `yaml:"token_file"`
	// Disabled serves without authentication on any address, an explicit choice that is
	// logged as a warning at start-up.
	Disabled bool `yaml:"disabled"`
	// MetricsOpen serves /metrics on the admin address without a token (a scraper that
	// cannot send one); otherwise /metrics needs the read role.
	MetricsOpen bool `yaml:"metrics_open"`
}

// TLSConfig configures TLS on the listeners: one certificate, served on those listeners
// whose flag is set. SIGHUP reloads the certificate, key and client CA.
type TLSConfig struct {
	// CertFile and KeyFile are the PEM certificate (chain) and private key served; empty
	// serves no TLS anywhere.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes the TLS listeners require a client certificate signed by
	// one of its CAs (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// Gateway, Admin and RPC choose the listeners that serve TLS when CertFile is set.
	Gateway bool `yaml:"gateway"`
	Admin   bool `yaml:"admin"`
	RPC     bool `yaml:"rpc"`
	// UpstreamCAFile, when set, makes a gateway tier speak TLS to gateway.upstream, verifying
	// the servers with this CA and presenting CertFile as its client certificate.
	UpstreamCAFile string `yaml:"upstream_ca_file"`
}

// Serves reports whether the listener whose flag is on serves TLS.
func (t TLSConfig) Serves(on bool) bool { return on && t.CertFile != "" }

// validateSecurity checks the auth and tls sections, and that without tokens every
// listener is on loopback unless authentication is disabled on purpose.
func (c *Config) validateSecurity() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Auth.Disabled && c.Auth.TokenFile != "" {
		bad("auth.disabled", "true turns authentication off, yet auth.token_file names tokens; set only one")
	}
	if c.Auth.TokenFile == "" && !c.Auth.Disabled {
		for _, l := range c.listeners() {
			if l.addr != "" && checkAddr(l.addr) == nil && !isLoopback(l.addr) {
				bad(l.key, "%q is not a loopback address and no tokens are configured: set auth.token_file "+
					"(mint tokens with `putallctl token ROLE NAME`), or auth.disabled: true to serve without authentication", l.addr)
			}
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.key_file", "tls.cert_file and tls.key_file go together, got cert_file %q and key_file %q", c.TLS.CertFile, c.TLS.KeyFile)
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		bad("tls.client_ca_file", "client certificates are asked for only over TLS: set tls.cert_file and tls.key_file too")
	}
	if c.TLS.UpstreamCAFile != "" && c.Gateway.Upstream == "" {
		bad("tls.upstream_ca_file", "only a gateway tier (gateway.upstream) dials upstream servers")
	}
	return errs
}

// listener is a listen address and its key.
type listener struct{ key, addr string }

// listeners returns the addresses this configuration listens on: a gateway tier has no RPC
// server.
func (c *Config) listeners() []listener {
	ls := []listener{{"gateway.addr", c.Gateway.Addr}, {"admin.addr", c.Admin.Addr}}
	if c.Gateway.Upstream == "" {
		ls = append([]listener{{"server.addr", c.Server.Addr}}, ls...)
	}
	return ls
}

// isLoopback reports whether addr listens on loopback only: its host is "localhost" or a
// loopback IP. An empty host (every interface) or any other name is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
