package raftstore

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

type testPKI struct {
	t   *testing.T
	ca  tlsutil.Pair
	dir string
}

func newPKI(t *testing.T) *testPKI {
	ca, err := tlsutil.CreateCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, ca: ca, dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(p.dir, "ca.pem"), ca.Cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// files issues a certificate for name (a node, or a client).
func (p *testPKI) files(name string, client bool) tlsutil.Files {
	p.t.Helper()
	pair, err := tlsutil.CreateCert(p.ca, tlsutil.CertOptions{Name: name, Hosts: []string{"127.0.0.1"}, Client: client, Validity: time.Hour})
	if err != nil {
		p.t.Fatal(err)
	}
	f := tlsutil.Files{CA: filepath.Join(p.dir, "ca.pem"), Cert: filepath.Join(p.dir, name+".pem"), Key: filepath.Join(p.dir, name+"-key.pem")}
	if err := pair.WriteFiles(f.Cert, f.Key); err != nil {
		p.t.Fatal(err)
	}
	return f
}

// A cluster over mutual TLS forms, forwards and reads; its node-to-node
// endpoints refuse a client's certificate; a node whose certificate comes
// from another CA cannot join.
func TestClusterOverTLS(t *testing.T) {
	pki := newPKI(t)
	certs := map[string]tlsutil.Files{}
	for _, id := range []string{"n1", "n2", "n3"} {
		certs[id] = pki.files(id, false)
	}
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TLS = TLSFiles(certs[cfg.ID]) })
	l, f := c.nodes[c.leader()], c.nodes[c.followers()[0]]
	if _, err := f.Set(ctx(t), "k", []byte("over tls")); err != nil {
		t.Fatalf("a write forwarded over TLS: %v", err)
	}
	if n := forwardedCount(t, f, "apply_http"); n != 0 {
		t.Fatalf("%v writes forwarded by HTTP, not on the TLS forwarding stream", n)
	}
	if e, err := c.nodes[c.followers()[1]].Get(ctx(t), "k"); err != nil || string(e.Value) != "over tls" {
		t.Fatalf("a follower's linearizable read over TLS: %+v %v", e, err)
	}

	client, err := tlsutil.ClientOnly(pki.files("ops", true))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + l.Addr() + "/v1/kv/k?raw")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("an https client: %d", resp.StatusCode)
	}
	resp, err = hc.Get("https://" + l.Addr() + "/internal/v1/term?id=" + l.ID())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a client certificate called a node-to-node endpoint: %d", resp.StatusCode)
	}

	// A node certificate from the right CA for a host that is no member's
	// does not open the node-to-node endpoints either.
	impostor, err := tlsutil.CreateCert(pki.ca, tlsutil.CertOptions{Name: "impostor", Hosts: []string{"10.9.9.9"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	imp := tlsutil.Files{CA: filepath.Join(pki.dir, "ca.pem"), Cert: filepath.Join(pki.dir, "imp.pem"), Key: filepath.Join(pki.dir, "imp-key.pem")}
	if err := impostor.WriteFiles(imp.Cert, imp.Key); err != nil {
		t.Fatal(err)
	}
	impTLS, err := tlsutil.ClientOnly(imp)
	if err != nil {
		t.Fatal(err)
	}
	ihc := &http.Client{Transport: &http.Transport{TLSClientConfig: impTLS}, Timeout: 5 * time.Second}
	defer ihc.CloseIdleConnections()
	if resp, err = ihc.Get("https://" + l.Addr() + "/internal/v1/term?id=" + l.ID()); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a node certificate for another host called a node-to-node endpoint: %d", resp.StatusCode)
	}

	// A node with a foreign CA's certificate asks to join: never a member.
	other := newPKI(t)
	c.dirs = append(c.dirs, t.TempDir())
	c.addrs = append(c.addrs, "127.0.0.1:0")
	c.nodes = append(c.nodes, nil)
	rogue := other.files("n4", false)
	c.tune = func(cfg *Config) {
		cfg.TLS = TLSFiles(certs[cfg.ID])
		if cfg.ID == "n4" {
			cfg.TLS = TLSFiles(rogue)
		}
	}
	c.start(3)
	time.Sleep(2 * time.Second) // the fault's duration: its join attempts fail meanwhile
	cfg, err := l.Configuration(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Servers {
		if s.ID == "n4" {
			t.Fatalf("a node with a foreign CA's certificate joined: %+v", cfg.Servers)
		}
	}
}
