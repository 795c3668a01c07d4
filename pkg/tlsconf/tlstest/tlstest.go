// Package tlstest makes certificates for tests: a CA, a server certificate for loopback
// (127.0.0.1, ::1, localhost) and a client certificate, all signed by the CA and written as
// PEM files, so tests serve and dial real TLS without files checked in.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/tlsconf"
)

// PKI is the files of one generated CA and the certificates it signed.
type PKI struct {
	// CA is the CA certificate: what verifies the server and the client.
	CA string
	// Server is the server's certificate and key, with CA set to verify clients (mTLS).
	Server tlsconf.Files
	// Client is the client's certificate and key, with CA set to verify the server.
	Client tlsconf.Files
}

// New generates a PKI in a directory of t's and returns its files. name tells two PKIs of
// one test apart in their subjects.
func New(t testing.TB, name string) PKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caDER := issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " test CA"},
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}, nil, nil)
	p := PKI{CA: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	p.Server = files(t, dir, "server", p.CA, caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.Client = files(t, dir, "client", p.CA, caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name + " test client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return p
}

// files issues tmpl under the CA and writes its certificate and key as NAME.pem and
// NAME-key.pem.
func files(t testing.TB, dir, name, caFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) tlsconf.Files {
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	key, _, der := issue(t, tmpl, ca, caKey)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return tlsconf.Files{
		Cert: writePEM(t, dir, name+".pem", "CERTIFICATE", der),
		Key:  writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", keyDER),
		CA:   caFile,
	}
}

// issue makes a key and a certificate from tmpl, valid for a day, signed by parent (self-signed
// when parent is nil).
func issue(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

// writePEM writes der as a PEM block of type typ to dir/name and returns the path.
func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
