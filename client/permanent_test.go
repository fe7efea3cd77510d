package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/kv"
)

// A TLS disagreement between the client and a node is told at once, with
// what to do, instead of being retried for the whole timeout: against
// real nodes (one with -tls-verify-incoming, one whose certificate names
// another host, one in plaintext).
func TestTLSMisconfigurationFailsAtOnceWithTheRemedy(t *testing.T) {
	good, other := newPKI(t, "raftkv CA"), newPKI(t, "another CA")
	secure := startNode(t, good.files("n1", false, "127.0.0.1"), true)
	misnamed := startNode(t, good.files("m1", false, "n1.example"), false)
	plain := startNode(t, tlsutil.Files{}, false)
	clientFiles := good.files("ops", true)
	strangerFiles := other.files("stranger", true)

	tlsConfig := func(ca string, cert tlsutil.Files) *tls.Config {
		t.Helper()
		cfg, err := TLSConfig(ca, cert.Cert, cert.Key)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cases := []struct {
		name     string
		endpoint string
		tls      *tls.Config
		problem  Problem
		want     string
	}{
		{"plaintext to a TLS node", "http://" + secure, nil, SpeaksTLS,
			secure + " speaks TLS: use https:// and pass --cacert"},
		{"no client certificate", secure, tlsConfig(good.caFile(), tlsutil.Files{}), ClientCertNeeded,
			secure + ": the node does not trust this client: pass --cert and --key"},
		{"a client certificate from another CA", secure, tlsConfig(good.caFile(), strangerFiles), ClientCertRefused,
			secure + ": the node refused this client's certificate (--cert): it is not signed by the nodes' CA"},
		{"another CA", secure, tlsConfig(other.caFile(), clientFiles), UnknownCA,
			secure + ": the node's certificate is not signed by the CA given (--cacert)"},
		{"a certificate for another name", misnamed, tlsConfig(good.caFile(), tlsutil.Files{}), WrongName,
			misnamed + ": the node's certificate does not name 127.0.0.1 (it names n1.example)"},
		{"TLS to a plaintext node", plain, tlsConfig(good.caFile(), tlsutil.Files{}), NoTLS,
			plain + " does not speak TLS: use http://"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Endpoints: []string{tc.endpoint}, TLS: tc.tls, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.hc.CloseIdleConnections()
			for _, call := range []struct {
				name string
				fn   func(context.Context) error
			}{
				{"get", func(ctx context.Context) error { _, _, err := c.Get(ctx, "k"); return err }},
				{"put", func(ctx context.Context) error { return c.Put(ctx, "k", []byte("v")) }},
			} {
				start := time.Now()
				err := call.fn(context.Background())
				took := time.Since(start)
				var se *SetupError
				if !errors.As(err, &se) || se.Problem != tc.problem || !errors.Is(err, ErrPermanent) {
					t.Fatalf("%s: %v, want problem %d", call.name, err, tc.problem)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%s: %q, want it to say %q", call.name, err, tc.want)
				}
				if took > 10*time.Second {
					t.Fatalf("%s gave up after %s: retried as if it could change (timeout 30s)", call.name, took)
				}
			}
		})
	}
	// One misconfigured endpoint among good ones costs its own attempt,
	// not the call: the certificate that names another host is left out.
	mixed, err := New(Config{Endpoints: []string{misnamed, secure}, TLS: tlsConfig(good.caFile(), clientFiles), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer mixed.hc.CloseIdleConnections()
	for range 2 {
		if err := mixed.Put(context.Background(), "k", []byte("v")); err != nil {
			t.Fatalf("a put with one misnamed endpoint and a good one: %v", err)
		}
	}
	// The right configuration works against the same node.
	c, err := New(Config{Endpoints: []string{secure}, TLS: tlsConfig(good.caFile(), clientFiles)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.hc.CloseIdleConnections()
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatalf("a put with the right certificates: %v", err)
	}
}

// A plaintext server that closes connections without a word and does not
// speak TLS either (a node restarting, say) is not taken for a TLS node:
// the call keeps retrying.
func TestClosedConnectionsFromAPlaintextServerAreRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			conn.Close()
		}
	}()
	defer wg.Wait()
	defer ln.Close()
	c, err := New(Config{Endpoints: []string{ln.Addr().String()}, Timeout: 800 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Get(context.Background(), "k")
	if err == nil || errors.Is(err, ErrPermanent) || !errors.Is(err, kv.ErrUnknownOutcome) {
		t.Fatalf("get from a server that hangs up: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted < 3 { // the request, the TLS probe, and a retry at least
		t.Fatalf("%d connections: the call was not retried", accepted)
	}
}
