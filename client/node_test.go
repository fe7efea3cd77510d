package client

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport/testnode"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/raftstore"
)

// startNode runs a one-node raftkv cluster in this process (TLS when
// files are given) and returns its address once it serves.
func startNode(t *testing.T, files tlsutil.Files, verifyIncoming bool) string {
	return testnode.Start(t, raftstore.TLSFiles(files), verifyIncoming)
}

// pki makes a CA and certificates signed by it, as files in a temp dir.
type pki struct {
	t   *testing.T
	ca  tlsutil.Pair
	dir string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	ca, err := tlsutil.CreateCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, ca: ca, dir: t.TempDir()}
	if err := os.WriteFile(p.caFile(), ca.Cert, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.pem") }

// files issues a certificate: a node's for hosts, or a client's.
func (p *pki) files(name string, client bool, hosts ...string) tlsutil.Files {
	p.t.Helper()
	pair, err := tlsutil.CreateCert(p.ca, tlsutil.CertOptions{Name: name, Hosts: hosts, Client: client, Validity: time.Hour})
	if err != nil {
		p.t.Fatal(err)
	}
	f := tlsutil.Files{CA: p.caFile(), Cert: filepath.Join(p.dir, name+".pem"), Key: filepath.Join(p.dir, name+"-key.pem")}
	if err := pair.WriteFiles(f.Cert, f.Key); err != nil {
		p.t.Fatal(err)
	}
	return f
}
