// Package tlsutil makes and loads raftkv's certificates: a development CA
// and node or client certificates signed by it (raftkv tls ca|cert create;
// the public package tlscerts offers the same to programs), and TLS
// configurations that re-read their files when they change, so that
// rotating a certificate needs no restart.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// Pair is a certificate and its key, PEM-encoded.
type Pair struct {
	Cert, Key []byte
}

// CreateCA makes a self-signed CA valid for validity.
func CreateCA(name string, validity time.Duration) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"raftkv"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Pair{}, fmt.Errorf("ca certificate: %w", err)
	}
	return encode(der, key)
}

// CertOptions describe a certificate to issue.
type CertOptions struct {
	// Name is the node ID (or the client's name): the certificate's CN.
	Name string
	// Hosts are the IP addresses and DNS names peers and clients use to
	// reach it (its advertise host). A node needs at least one.
	Hosts []string
	// Client makes a client-only certificate (no server use).
	Client   bool
	Validity time.Duration
}

// CreateCert issues a certificate signed by ca. A node's certificate serves
// both ends of mutual TLS (server and client auth); a client's only the
// client end.
func CreateCert(ca Pair, o CertOptions) (Pair, error) {
	caCert, caKey, err := parsePair(ca)
	if err != nil {
		return Pair{}, fmt.Errorf("ca: %w", err)
	}
	if o.Name == "" {
		return Pair{}, errors.New("a certificate needs a name (--node)")
	}
	if !o.Client && len(o.Hosts) == 0 {
		return Pair{}, errors.New("a node certificate needs at least one --host (its advertise address's host)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.Name, Organization: []string{"raftkv"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(o.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if o.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("certificate: %w", err)
	}
	return encode(der, key)
}

// WriteFiles writes p to certPath and keyPath (the key readable by its
// owner only), refusing to overwrite either.
func (p Pair) WriteFiles(certPath, keyPath string) error {
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{certPath, p.Cert, 0o644}, {keyPath, p.Key, 0o600}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return err
		}
		if _, err := fh.Write(f.data); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

// ReadPair reads a certificate and its key from files.
func ReadPair(certPath, keyPath string) (Pair, error) {
	cert, err := os.ReadFile(certPath)
	if err != nil {
		return Pair{}, err
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		return Pair{}, err
	}
	return Pair{Cert: cert, Key: key}, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

func parsePair(p Pair) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(p.Cert)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(p.Key)
	if kb == nil {
		return nil, nil, errors.New("no PEM key")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	return cert, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
