package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	raftkv := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := raftkv("tls", "ca", "create", "--dir", dir); code != 0 {
		t.Fatalf("ca create: %d %s", code, out)
	}
	ca, cakey := filepath.Join(dir, "raftkv-ca.pem"), filepath.Join(dir, "raftkv-ca-key.pem")
	if code, out := raftkv("tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", cakey, "--node", "n1", "--host", "127.0.0.1", "--host", "n1.example"); code != 0 {
		t.Fatalf("cert create: %d %s", code, out)
	}
	if code, out := raftkv("tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", cakey, "--node", "ops", "--client"); code != 0 {
		t.Fatalf("client cert create: %d %s", code, out)
	}
	if code, out := raftkv("tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", cakey, "--node", "n2"); code != 1 || !strings.Contains(out, "--host") {
		t.Fatalf("a node certificate without --host: %d %s", code, out)
	}
	if code, _ := raftkv("tls", "ca", "create", "--dir", dir); code != 1 {
		t.Fatal("ca create overwrote an existing CA")
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	roots.AppendCertsFromPEM(caPEM)
	for _, c := range []struct {
		file  string
		usage x509.ExtKeyUsage
		host  string
	}{{"n1.pem", x509.ExtKeyUsageServerAuth, "n1.example"}, {"n1.pem", x509.ExtKeyUsageClientAuth, ""}, {"ops.pem", x509.ExtKeyUsageClientAuth, ""}} {
		b, _ := os.ReadFile(filepath.Join(dir, c.file))
		blk, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: c.host, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Fatalf("%s for %v: %v", c.file, c.usage, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "n1-key.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
}
