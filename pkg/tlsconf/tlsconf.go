// Package tlsconf builds the TLS configurations of putallkv's servers and clients from PEM
// files. A server's certificate and client CA are read again by Reload (on SIGHUP), so a
// renewed certificate takes effect without a restart: every handshake asks the Server for
// the configuration in force (tls.Config.GetConfigForClient), and a reload that fails keeps
// the one before.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// minVersion is the oldest TLS version served or spoken: TLS 1.2 (older ones have known
// weaknesses and no client of putallkv needs them).
const minVersion = tls.VersionTLS12

// Files names a certificate, its key and a CA, each a PEM file.
type Files struct {
	// Cert and Key are the certificate (chain) presented to the peer and its private key;
	// both empty for none.
	Cert, Key string
	// CA is the CA bundle that verifies the peer: on a server, client certificates (mutual
	// TLS: a client without a certificate it verifies is refused); on a client, the server's
	// certificate (empty: the system's roots).
	CA string
}

// Server is the TLS configuration of a listener, reloadable from its Files.
type Server struct {
	files Files
	cur   atomic.Pointer[tls.Config]
}

// NewServer loads files (Cert and Key required, CA optional).
func NewServer(files Files) (*Server, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tlsconf: a server needs a certificate and a key")
	}
	s := &Server{files: files}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on error the configuration in force is kept.
func (s *Server) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("tlsconf: certificate %s, key %s: %w", s.files.Cert, s.files.Key, err)
	}
	cfg := &tls.Config{MinVersion: minVersion, Certificates: []tls.Certificate{cert}}
	if s.files.CA != "" {
		if cfg.ClientCAs, err = loadPool(s.files.CA); err != nil {
			return err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	s.cur.Store(cfg)
	return nil
}

// Config returns the configuration to serve with: each handshake uses the files as last
// loaded.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// Client returns a client configuration from files: CA verifies the server (empty: the
// system's roots), Cert and Key, when given, are presented to a server that asks for a
// client certificate.
func Client(files Files) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: minVersion}
	if (files.Cert == "") != (files.Key == "") {
		return nil, errors.New("tlsconf: a client certificate needs both the certificate and its key")
	}
	if files.Cert != "" {
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: certificate %s, key %s: %w", files.Cert, files.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if files.CA != "" {
		pool, err := loadPool(files.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// loadPool reads a PEM bundle of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsconf: %s holds no PEM certificate", file)
	}
	return pool, nil
}
