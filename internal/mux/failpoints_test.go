//go:build failpoints

package mux

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBlockedPeersCutRaftBothWaysAndHeal(t *testing.T) {
	a, b := startNode(t), startNode(t)
	if err := appendEntries(a, b); err != nil {
		t.Fatal(err)
	}
	// Block on both sides: existing pooled connections are closed, new dials fail.
	a.mux.faults.setBlocked([]string{b.mux.Addr().String()})
	b.mux.faults.setBlocked([]string{a.mux.Addr().String()})
	if err := appendEntries(a, b); err == nil {
		t.Fatal("raft RPC a→b went through a partition")
	}
	if err := appendEntries(b, a); err == nil {
		t.Fatal("raft RPC b→a went through a partition")
	}
	// Clients (HTTP) still reach both.
	if err := httpGet(a); err != nil {
		t.Fatalf("client traffic blocked: %v", err)
	}
	a.mux.faults.setBlocked(nil)
	b.mux.faults.setBlocked(nil)
	if err := appendEntries(a, b); err != nil {
		t.Fatalf("after healing: %v", err)
	}
}

func TestFailpointEndpoint(t *testing.T) {
	n := startNode(t)
	h := n.mux.FailpointHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PUT", "/debug/failpoints/blocked", strings.NewReader("127.0.0.1:1, 127.0.0.1:2")))
	if rec.Body.String() != "127.0.0.1:1,127.0.0.1:2\n" {
		t.Fatalf("PUT answered %q", rec.Body.String())
	}
	if err := n.mux.faults.allow("127.0.0.1:2"); err == nil {
		t.Fatal("blocked address allowed")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PUT", "/debug/failpoints/blocked", strings.NewReader("")))
	if err := n.mux.faults.allow("127.0.0.1:2"); err != nil {
		t.Fatal("heal did not unblock")
	}
}
