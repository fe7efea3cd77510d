package tlscerts

import (
	"time"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// Pair is a certificate and its private key, PEM-encoded.
type Pair struct {
	Cert, Key []byte
}

// CertOptions describe a certificate to issue.
type CertOptions struct {
	// Name is the node ID (or the client's name): the certificate's CN.
	Name string
	// Hosts are the IP addresses and DNS names peers and clients use to
	// reach the node (its advertise host). A node needs at least one.
	Hosts []string
	// Client makes a client-only certificate (no server use).
	Client bool
	// Validity is how long the certificate is valid from now.
	Validity time.Duration
}

// CreateCA makes a self-signed CA valid for validity.
func CreateCA(name string, validity time.Duration) (Pair, error) {
	p, err := tlsutil.CreateCA(name, validity)
	return Pair(p), err
}

// CreateCert issues a certificate signed by ca: a node's (server and
// client use, for o.Hosts) or, with o.Client, a client's.
func CreateCert(ca Pair, o CertOptions) (Pair, error) {
	p, err := tlsutil.CreateCert(tlsutil.Pair(ca), tlsutil.CertOptions(o))
	return Pair(p), err
}

// WriteFiles writes p to certPath and keyPath (the key readable by its
// owner only), refusing to overwrite either.
func (p Pair) WriteFiles(certPath, keyPath string) error {
	return tlsutil.Pair(p).WriteFiles(certPath, keyPath)
}
