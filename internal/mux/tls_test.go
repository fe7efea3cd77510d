package mux

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// tlsFiles writes a CA (or uses ca) and a node certificate for 127.0.0.1.
func tlsFiles(t *testing.T, ca tlsutil.Pair, name string) tlsutil.Files {
	t.Helper()
	dir := t.TempDir()
	p, err := tlsutil.CreateCert(ca, tlsutil.CertOptions{Name: name, Hosts: []string{"127.0.0.1"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f := tlsutil.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}
	os.WriteFile(f.CA, ca.Cert, 0o644)
	if err := p.WriteFiles(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	return f
}

func startTLSNode(t *testing.T, files tlsutil.Files, verifyIncoming bool) *node {
	t.Helper()
	store, err := tlsutil.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Listen("127.0.0.1:0", Options{SniffTimeout: time.Second, TLS: &TLS{Store: store, VerifyIncoming: verifyIncoming}})
	if err != nil {
		t.Fatal(err)
	}
	return serveNode(t, m)
}

// Raft and HTTP share the port over TLS, told apart by ALPN; peers verify
// each other; plaintext is closed; HTTP/2 is offered.
func TestTLSPort(t *testing.T) {
	ca, err := tlsutil.CreateCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fa, fb := tlsFiles(t, ca, "a"), tlsFiles(t, ca, "b")
	a, b := startTLSNode(t, fa, true), startTLSNode(t, fb, true)
	if err := appendEntries(a, b); err != nil {
		t.Fatalf("raft over TLS: %v", err)
	}
	// Node-to-node HTTP (forwarding) through the mux's dialer.
	hc := &http.Client{Transport: &http.Transport{DialContext: a.mux.DialContext}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + b.mux.Addr().String() + "/")
	if err != nil {
		t.Fatalf("node-to-node HTTP over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "pong" {
		t.Fatalf("body %q", body)
	}
	// A client with a certificate speaks HTTP/2 if it offers it.
	client, err := tlsutil.ClientOnly(fa)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: client, ForceAttemptHTTP2: true}
	resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + b.mux.Addr().String() + "/")
	if err != nil {
		t.Fatalf("https client: %v", err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	// Without a client certificate under verify-incoming: refused.
	anon, _ := tlsutil.ClientOnly(tlsutil.Files{CA: fa.CA})
	anonTr := &http.Transport{TLSClientConfig: anon}
	if _, err := (&http.Client{Transport: anonTr, Timeout: 5 * time.Second}).Get("https://" + b.mux.Addr().String() + "/"); err == nil {
		t.Fatal("a client without a certificate was served under verify-incoming")
	}
	anonTr.CloseIdleConnections()
	// Plaintext: the connection is closed, nothing is served.
	c, err := net.DialTimeout("tcp", b.mux.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if buf, _ := io.ReadAll(c); len(buf) > 0 && string(buf[:4]) == "HTTP" {
		t.Fatalf("plaintext was served: %q", buf)
	}
	c.Close()
	// A node with a certificate from another CA cannot speak raft to b.
	other, _ := tlsutil.CreateCA("other", time.Hour)
	rogue := startTLSNode(t, tlsFiles(t, other, "rogue"), true)
	if err := appendEntries(rogue, b); err == nil {
		t.Fatal("a node with a foreign CA's certificate reached raft")
	}
}

// Groups share the port over TLS too (ALPN, then the group ID).
func TestTLSRaftGroups(t *testing.T) {
	ca, err := tlsutil.CreateCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	testRaftGroups(t, func(t *testing.T) *node { return startTLSNode(t, tlsFiles(t, ca, "n"), false) })
}
