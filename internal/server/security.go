package server

import (
	"crypto/tls"
	"fmt"

	kitexserver "github.com/cloudwego/kitex/server"

	"github.com/putallkv/putallkv/handler"
	"github.com/putallkv/putallkv/pkg/auth"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/metrics"
	"github.com/putallkv/putallkv/pkg/tlsconf"
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
func (s *Server) loadSecurity() error {
	cfg := s.cfg
	var err error
	if cfg.Auth.TokenFile != "" {
		if s.sec.auth, err = auth.NewAuthenticator(cfg.Auth.TokenFile); err != nil {
			return fmt.Errorf("auth.token_file: %w", err)
		}
		s.log.Info("authentication on", "tokens", s.sec.auth.Tokens())
	}
	if cfg.Auth.Disabled {
		s.log.Warn("authentication is disabled (auth.disabled: true): anyone who reaches the listeners can read, "+
			"write, profile the process and run admin commands",
			"server.addr", cfg.Server.Addr, "gateway.addr", cfg.Gateway.Addr, "admin.addr", cfg.Admin.Addr)
	}
	if cfg.TLS.CertFile != "" {
		files := tlsconf.Files{Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile, CA: cfg.TLS.ClientCAFile}
		if s.sec.certs, err = tlsconf.NewServer(files); err != nil {
			return fmt.Errorf("tls.cert_file: %w", err)
		}
	}
	return nil
}

// tlsFor is the TLS configuration of a listener whose tls flag is on, or nil.
func (s *Server) tlsFor(on bool) *tls.Config {
	if !s.cfg.TLS.Serves(on) {
		return nil
	}
	return s.sec.certs.Config()
}

// rpcSecurity returns the Kitex server options that check tokens and serve TLS; the RPC
// server then listens on what listener returns instead of its plain listener.
func (s *Server) rpcSecurity(transport handler.Transport) []kitexserver.Option {
	var opts []kitexserver.Option
	if s.sec.auth != nil {
		opts = append(opts, kitexserver.WithMiddleware(handler.Authorize(s.sec.auth, s.log)))
	}
	if cfg := s.tlsFor(s.cfg.TLS.RPC); cfg != nil {
		s.sec.rpcLn = handler.NewTLSListener(s.rpcLn, cfg)
		opts = append(opts, s.sec.rpcLn.ServerOptions(transport)...)
	}
	return opts
}

// adminSecurity guards the admin server.
func (s *Server) adminSecurity() metrics.AdminSecurity {
	return metrics.AdminSecurity{Auth: s.sec.auth, MetricsOpen: s.cfg.Auth.MetricsOpen, TLS: s.tlsFor(s.cfg.TLS.Admin)}
}

// upstreamOptions are a gateway tier's client options: TLS to the upstream servers when
// tls.upstream_ca_file is set, with the tier's certificate as its client certificate.
func (s *Server) upstreamOptions() ([]kvclient.Option, error) {
	if s.cfg.TLS.UpstreamCAFile == "" {
		return nil, nil
	}
	cfg, err := tlsconf.Client(tlsconf.Files{Cert: s.cfg.TLS.CertFile, Key: s.cfg.TLS.KeyFile, CA: s.cfg.TLS.UpstreamCAFile})
	if err != nil {
		return nil, fmt.Errorf("tls.upstream_ca_file: %w", err)
	}
	return []kvclient.Option{kvclient.WithTLS(cfg)}, nil
}

// drainRPC closes the TLS RPC connections that wait between calls, so a graceful shutdown
// does not wait for clients to drop their pooled connections.
func (s *Server) drainRPC() {
	if s.sec.rpcLn != nil {
		s.sec.rpcLn.Drain()
	}
}

// reloadSecurity reads the token file and the certificate files again (SIGHUP). A file that
// fails keeps what was in force, and the failure is logged.
func (s *Server) reloadSecurity() {
	if s.sec.auth != nil {
		if err := s.sec.auth.Reload(); err != nil {
			s.log.Error("token file reload refused; the tokens in force are kept", "key", "auth.token_file", "err", err)
		} else {
			s.log.Info("token file reloaded", "tokens", s.sec.auth.Tokens())
		}
	}
	if s.sec.certs != nil {
		if err := s.sec.certs.Reload(); err != nil {
			s.log.Error("certificate reload refused; the certificate in force is kept", "key", "tls.cert_file", "err", err)
		} else {
			s.log.Info("certificate reloaded")
		}
	}
}
