package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func write(t *testing.T, dir, name string, p Pair) Files {
	t.Helper()
	f := Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
	os.Remove(f.Cert)
	os.Remove(f.Key)
	if err := p.WriteFiles(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustCA(t *testing.T) Pair {
	ca, err := CreateCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustCert(t *testing.T, ca Pair, o CertOptions) Pair {
	o.Validity = time.Hour
	p, err := CreateCert(ca, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// handshake runs one TLS handshake over loopback and returns the
// server's view of it, or the error either side saw.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		st  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		err = tc.Handshake()
		done <- result{tc.ConnectionState(), err}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		c.Close()
	}
	r := <-done
	if err != nil {
		return r.st, err
	}
	return r.st, r.err
}

func TestMutualTLSAndRotation(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.Cert, 0o644)
	n1 := write(t, dir, "n1", mustCert(t, ca, CertOptions{Name: "n1", Hosts: []string{"127.0.0.1", "n1.local"}}))
	n2 := write(t, dir, "n2", mustCert(t, ca, CertOptions{Name: "n2", Hosts: []string{"127.0.0.1"}}))
	n1.CA, n2.CA = caFile, caFile
	s1, err := Load(n1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Load(n2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := handshake(t, s1.Server(true, []string{"raftkv-raft"}), s2.Client("127.0.0.1", []string{"raftkv-raft"}))
	if err != nil || st.NegotiatedProtocol != "raftkv-raft" || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "n2" {
		t.Fatalf("mutual TLS between nodes: %v %+v", err, st.NegotiatedProtocol)
	}
	// The server's certificate must name the host dialled.
	if _, err := handshake(t, s1.Server(true, nil), s2.Client("10.9.9.9", nil)); err == nil {
		t.Fatal("a certificate that does not name the host was accepted")
	}
	// A certificate from another CA is refused both ways.
	other := mustCA(t)
	rogue := write(t, dir, "rogue", mustCert(t, other, CertOptions{Name: "rogue", Hosts: []string{"127.0.0.1"}}))
	otherCA := filepath.Join(dir, "other-ca.pem")
	os.WriteFile(otherCA, other.Cert, 0o644)
	rogue.CA = otherCA
	sr, err := Load(rogue)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, s1.Server(true, nil), sr.Client("127.0.0.1", nil)); err == nil {
		t.Fatal("a peer certificate from another CA was accepted")
	}
	// No client certificate: refused when required, allowed otherwise.
	anon, err := ClientOnly(Files{CA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	anon.ServerName = "127.0.0.1"
	if _, err := handshake(t, s1.Server(true, nil), anon); err == nil {
		t.Fatal("a client without a certificate was accepted under verify-incoming")
	}
	if _, err := handshake(t, s1.Server(false, nil), anon.Clone()); err != nil {
		t.Fatalf("a client without a certificate, not required: %v", err)
	}

	// Rotation: n1's certificate replaced on disk is used by new
	// connections, without a new Store.
	before := serialOf(t, n1.Cert)
	s1.now = func() time.Time { return time.Now().Add(time.Hour) } // past the check interval
	write(t, dir, "n1", mustCert(t, ca, CertOptions{Name: "n1", Hosts: []string{"127.0.0.1"}}))
	client := s2.Client("127.0.0.1", nil)
	var seen *x509.Certificate
	client.VerifyConnection = func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0]; return nil }
	if _, err := handshake(t, s1.Server(true, nil), client); err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.SerialNumber.Cmp(before) == 0 {
		t.Fatal("the rotated certificate was not used")
	}
}

func serialOf(t *testing.T, path string) *big.Int {
	t.Helper()
	b, _ := os.ReadFile(path)
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

func TestCertificateShapes(t *testing.T) {
	ca := mustCA(t)
	if _, err := CreateCert(ca, CertOptions{Name: "n1", Validity: time.Hour}); err == nil {
		t.Fatal("a node certificate without a host")
	}
	client := mustCert(t, ca, CertOptions{Name: "ops", Client: true})
	blk, _ := pem.Decode(client.Cert)
	c, _ := x509.ParseCertificate(blk.Bytes)
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("client usages: %v", c.ExtKeyUsage)
	}
	if err := client.WriteFiles(filepath.Join(t.TempDir(), "c.pem"), filepath.Join(t.TempDir(), "k.pem")); err != nil {
		t.Fatal(err)
	}
}
