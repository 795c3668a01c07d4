package main

import (
	"crypto/tls"
	"fmt"

	"github.com/cloudwego/kitex/server"

	"putallkv/handler"
	"putallkv/pkg/auth"
	"putallkv/pkg/kvclient"
	"putallkv/pkg/metrics"
	"putallkv/pkg/tlsconf"
)

// security is what guards a process's listeners: the tokens in force and the certificate
// served, both reloaded on SIGHUP.
type security struct {
	auth  *auth.Authenticator // nil: no tokens (loopback only, or auth.disabled)
	certs *tlsconf.Server     // nil: no TLS
	rpcLn *handler.TLSListener
}

// loadSecurity loads the token file and the certificate the configuration names, and warns
// when authentication is disabled on purpose.
func (a *app) loadSecurity() error {
	cfg := a.cfg
	var err error
	if cfg.Auth.TokenFile != "" {
		if a.sec.auth, err = auth.NewAuthenticator(cfg.Auth.TokenFile); err != nil {
			return fmt.Errorf("auth.token_file: %w", err)
		}
		a.log.Info("authentication on", "tokens", a.sec.auth.Tokens())
	}
	if cfg.Auth.Disabled {
		a.log.Warn("authentication is disabled (auth.disabled: true): anyone who reaches the listeners can read, "+
			"write, profile the process and run admin commands",
			"server.addr", cfg.Server.Addr, "gateway.addr", cfg.Gateway.Addr, "admin.addr", cfg.Admin.Addr)
	}
	if cfg.TLS.CertFile != "" {
		files := tlsconf.Files{Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile, CA: cfg.TLS.ClientCAFile}
		if a.sec.certs, err = tlsconf.NewServer(files); err != nil {
			return fmt.Errorf("tls.cert_file: %w", err)
		}
	}
	return nil
}

// tlsFor is the TLS configuration of a listener whose tls flag is on, or nil.
func (a *app) tlsFor(on bool) *tls.Config {
	if !a.cfg.TLS.Serves(on) {
		return nil
	}
	return a.sec.certs.Config()
}

// rpcSecurity returns the Kitex server options that check tokens and serve TLS; the RPC
// server then listens on what listener returns instead of its plain listener.
func (a *app) rpcSecurity(transport handler.Transport) []server.Option {
	var opts []server.Option
	if a.sec.auth != nil {
		opts = append(opts, server.WithMiddleware(handler.Authorize(a.sec.auth, a.log)))
	}
	if cfg := a.tlsFor(a.cfg.TLS.RPC); cfg != nil {
		a.sec.rpcLn = handler.NewTLSListener(a.rpcLn, cfg)
		opts = append(opts, a.sec.rpcLn.ServerOptions(transport)...)
	}
	return opts
}

// adminSecurity guards the admin server.
func (a *app) adminSecurity() metrics.AdminSecurity {
	return metrics.AdminSecurity{Auth: a.sec.auth, MetricsOpen: a.cfg.Auth.MetricsOpen, TLS: a.tlsFor(a.cfg.TLS.Admin)}
}

// upstreamOptions are a gateway tier's client options: TLS to the upstream servers when
// tls.upstream_ca_file is set, with the tier's certificate as its client certificate.
func (a *app) upstreamOptions() ([]kvclient.Option, error) {
	if a.cfg.TLS.UpstreamCAFile == "" {
		return nil, nil
	}
	cfg, err := tlsconf.Client(tlsconf.Files{Cert: a.cfg.TLS.CertFile, Key: a.cfg.TLS.KeyFile, CA: a.cfg.TLS.UpstreamCAFile})
	if err != nil {
		return nil, fmt.Errorf("tls.upstream_ca_file: %w", err)
	}
	return []kvclient.Option{kvclient.WithTLS(cfg)}, nil
}

// drainRPC closes the TLS RPC connections that wait between calls, so a graceful shutdown
// does not wait for clients to drop their pooled connections.
func (a *app) drainRPC() {
	if a.sec.rpcLn != nil {
		a.sec.rpcLn.Drain()
	}
}

// reloadSecurity reads the token file and the certificate files again (SIGHUP). A file that
// fails keeps what was in force, and the failure is logged.
func (a *app) reloadSecurity() {
	if a.sec.auth != nil {
		if err := a.sec.auth.Reload(); err != nil {
			a.log.Error("token file reload refused; the tokens in force are kept", "key", "auth.token_file", "err", err)
		} else {
			a.log.Info("token file reloaded", "tokens", a.sec.auth.Tokens())
		}
	}
	if a.sec.certs != nil {
		if err := a.sec.certs.Reload(); err != nil {
			a.log.Error("certificate reload refused; the certificate in force is kept", "key", "tls.cert_file", "err", err)
		} else {
			a.log.Info("certificate reloaded")
		}
	}
}
