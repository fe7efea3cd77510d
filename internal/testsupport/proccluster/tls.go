package proccluster

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	rkclient "github.com/raftkv/raftkv/client"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// pki is a cluster's own CA, with a certificate per node naming its host.
type pki struct {
	ca  tlsutil.Pair
	dir string
}

func (c *Cluster) setupTLS() {
	ca, err := tlsutil.CreateCA("proccluster", 24*time.Hour)
	if err != nil {
		c.TB.Fatal(err)
	}
	c.pki = &pki{ca: ca, dir: c.TB.TempDir()}
	if err := os.WriteFile(filepath.Join(c.pki.dir, "ca.pem"), ca.Cert, 0o644); err != nil {
		c.TB.Fatal(err)
	}
	client := c.issue("client", "", true)
	cfg, err := tlsutil.ClientOnly(client)
	if err != nil {
		c.TB.Fatal(err)
	}
	c.Opts.ClientTLS = cfg
}

// issue writes a certificate for name (a node at host, or a client).
func (c *Cluster) issue(name, host string, client bool) tlsutil.Files {
	o := tlsutil.CertOptions{Name: name, Client: client, Validity: 24 * time.Hour}
	if host != "" {
		o.Hosts = []string{host}
	}
	p, err := tlsutil.CreateCert(c.pki.ca, o)
	if err != nil {
		c.TB.Fatal(err)
	}
	f := tlsutil.Files{CA: filepath.Join(c.pki.dir, "ca.pem"), Cert: filepath.Join(c.pki.dir, name+".pem"), Key: filepath.Join(c.pki.dir, name+"-key.pem")}
	os.Remove(f.Cert)
	os.Remove(f.Key)
	if err := p.WriteFiles(f.Cert, f.Key); err != nil {
		c.TB.Fatal(err)
	}
	return f
}

// tlsArgs are node p's TLS flags (nil without Options.TLS).
func (c *Cluster) tlsArgs(p *Proc) []string {
	if c.pki == nil {
		return nil
	}
	host, _, _ := net.SplitHostPort(p.Addr)
	f := c.issue(p.ID, host, false)
	return []string{"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// HTTPClient reaches the nodes, over TLS when the cluster speaks it, with
// the management token when it has ACLs (requests that carry no token).
func (c *Cluster) HTTPClient(timeout time.Duration) *http.Client {
	return c.httpClient(timeout, true)
}

func (c *Cluster) httpClient(timeout time.Duration, keepAlive bool) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableKeepAlives: !keepAlive}
	if c.Opts.ClientTLS != nil {
		tr.TLSClientConfig = c.Opts.ClientTLS.Clone()
	}
	if c.Opts.ACLs {
		return &http.Client{Transport: rkclient.TokenTransport{Token: ManagementToken, Next: tr}, Timeout: timeout}
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// URL is node addr's path, https:// when the cluster speaks TLS.
func (c *Cluster) URL(addr, path string) string {
	if c.Opts.ClientTLS != nil {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}
