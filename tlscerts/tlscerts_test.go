package tlscerts

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func parse(t *testing.T, p Pair) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p.Cert)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A node's certificate verifies against its CA for both ends of mutual TLS
// and names its hosts; a client's only for the client end; the files are
// written once.
func TestCertificates(t *testing.T) {
	ca, err := CreateCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parse(t, ca))
	verify := func(p Pair, host string, use x509.ExtKeyUsage) error {
		_, err := parse(t, p).Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{use}})
		return err
	}

	node, err := CreateCert(ca, CertOptions{Name: "n1", Hosts: []string{"127.0.0.1", "n1.internal"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "n1.internal"} {
		for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if err := verify(node, host, use); err != nil {
				t.Fatalf("node certificate for %s, use %v: %v", host, use, err)
			}
		}
	}
	if verify(node, "10.9.9.9", x509.ExtKeyUsageServerAuth) == nil {
		t.Fatal("a node certificate verified for a host it does not name")
	}
	if _, err := CreateCert(ca, CertOptions{Name: "n2", Validity: time.Hour}); err == nil {
		t.Fatal("a node certificate without hosts was issued")
	}

	client, err := CreateCert(ca, CertOptions{Name: "ops", Client: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(client, "", x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	if verify(client, "", x509.ExtKeyUsageServerAuth) == nil {
		t.Fatal("a client certificate verified for server use")
	}

	dir := t.TempDir()
	cert, key := filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")
	if err := node.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi.Mode(), err)
	}
	if node.WriteFiles(cert, key) == nil {
		t.Fatal("WriteFiles overwrote existing files")
	}
}
