package tlsconf_test

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/pkg/tlsconf"
	"github.com/putallkv/putallkv/pkg/tlsconf/tlstest"
)

// serve accepts connections on a loopback TLS listener with cfg, completes each handshake
// and writes "ok"; it stops when the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if err := c.(*tls.Conn).Handshake(); err == nil {
				_, _ = io.WriteString(c, "ok")
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// dial connects with cfg and returns the server certificate's issuer and what the server
// wrote, or the error.
func dial(addr string, cfg *tls.Config) (issuer string, err error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if string(b) != "ok" {
		return "", errors.New("the server refused after the handshake")
	}
	return c.ConnectionState().PeerCertificates[0].Issuer.CommonName, nil
}

func clientConfig(t *testing.T, files tlsconf.Files) *tls.Config {
	t.Helper()
	cfg, err := tlsconf.Client(files)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestServerReloadsCertificate checks that a reload puts a new certificate in force for
// the next handshake, and that a reload from bad files keeps the one in force.
func TestServerReloadsCertificate(t *testing.T) {
	first, second := tlstest.New(t, "first"), tlstest.New(t, "second")
	files := first.Server
	files.CA = ""
	s, err := tlsconf.NewServer(files)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s.Config())
	if issuer, err := dial(addr, clientConfig(t, tlsconf.Files{CA: first.CA})); err != nil || issuer != "first test CA" {
		t.Fatalf("before reload: %q, %v", issuer, err)
	}
	copyFile(t, second.Server.Cert, files.Cert)
	copyFile(t, second.Server.Key, files.Key)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if issuer, err := dial(addr, clientConfig(t, tlsconf.Files{CA: second.CA})); err != nil || issuer != "second test CA" {
		t.Fatalf("after reload: %q, %v", issuer, err)
	}
	if err := os.WriteFile(files.Key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("a reload with a bad key succeeded")
	}
	if issuer, err := dial(addr, clientConfig(t, tlsconf.Files{CA: second.CA})); err != nil || issuer != "second test CA" {
		t.Fatalf("after a refused reload: %q, %v; want the certificate in force kept", issuer, err)
	}
}

// TestMutualTLSRefusesClientWithoutCertificate checks that with a client CA configured the
// server refuses a client that presents no certificate, or one another CA signed.
func TestMutualTLSRefusesClientWithoutCertificate(t *testing.T) {
	pki, other := tlstest.New(t, "main"), tlstest.New(t, "other")
	s, err := tlsconf.NewServer(pki.Server)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s.Config())
	if _, err := dial(addr, clientConfig(t, pki.Client)); err != nil {
		t.Fatalf("a client with a certificate of the CA: %v", err)
	}
	if _, err := dial(addr, clientConfig(t, tlsconf.Files{CA: pki.CA})); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	stranger := other.Client
	stranger.CA = pki.CA
	if _, err := dial(addr, clientConfig(t, stranger)); err == nil {
		t.Fatal("a client with another CA's certificate was served")
	}
}

func TestFileErrors(t *testing.T) {
	pki := tlstest.New(t, "x")
	if _, err := tlsconf.NewServer(tlsconf.Files{Cert: pki.Server.Cert}); err == nil {
		t.Error("a server without a key was accepted")
	}
	if _, err := tlsconf.NewServer(tlsconf.Files{Cert: pki.Server.Cert, Key: pki.Server.Key, CA: pki.Server.Key}); err == nil ||
		!strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without certificates: %v", err)
	}
	if _, err := tlsconf.Client(tlsconf.Files{Cert: pki.Client.Cert}); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
