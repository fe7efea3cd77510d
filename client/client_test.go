package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// script answers requests with a list of statuses, recording what it saw.
type script struct {
	mu       sync.Mutex
	statuses []int
	bodies   []string
	keys     []string
	paths    []string
	route    string // the api.RouteHeader its answers carry, if any
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	if s.route != "" {
		w.Header().Set(api.RouteHeader, s.route)
	}
	status, body := http.StatusOK, "true"
	if len(s.statuses) > 0 {
		status, body = s.statuses[0], s.bodies[0]
		s.statuses, s.bodies = s.statuses[1:], s.bodies[1:]
	}
	// "code: reason" bodies answer as a raftkv node does: the error's
	// code in a header, the reason in the body.
	if code, reason, ok := strings.Cut(body, ": "); ok && status >= 400 && !strings.Contains(code, " ") {
		w.Header().Set(wire.HeaderError, code)
		body = reason
	}
	w.Header().Set("X-Consul-Index", "7")
	w.WriteHeader(status)
	w.Write([]byte(body))
}

func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newTestClient(t *testing.T, endpoints ...string) *Client {
	c, err := New(Config{Endpoints: endpoints, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFailoverOnConnectionErrorsAnd503(t *testing.T) {
	busy := &script{statuses: []int{500, 503}, bodies: []string{"no_leader: No cluster leader", "closed: node closed"}}
	a := httptest.NewServer(busy)
	defer a.Close()
	good := &script{}
	b := httptest.NewServer(good)
	defer b.Close()
	c := newTestClient(t, deadAddr(t), a.URL, b.URL)
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if len(good.keys) != 1 {
		t.Fatalf("the healthy endpoint saw %d requests", len(good.keys))
	}
	// The answering endpoint is preferred next time.
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil || len(good.keys) != 2 || len(busy.keys) != 1 {
		t.Fatalf("second call: err=%v good=%d busy=%d", err, len(good.keys), len(busy.keys))
	}
}

func TestUnknownOutcomeRetriedWithTheSameKey(t *testing.T) {
	s := &script{statuses: []int{500, 500}, bodies: []string{"unknown_outcome: lost leader", "unknown_outcome: lost leader"}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if len(s.keys) != 3 || s.keys[0] == "" || s.keys[0] != s.keys[1] || s.keys[1] != s.keys[2] {
		t.Fatalf("idempotency keys across retries: %q", s.keys)
	}
	// A new logical write gets a new key.
	c.Put(context.Background(), "k", []byte("v"))
	if s.keys[3] == s.keys[0] {
		t.Fatal("two logical writes shared a key")
	}
	// A non-repeatable call (remove) is not retried after an unknown outcome.
	s.statuses, s.bodies = []int{500}, []string{"unknown_outcome: lost"}
	n := len(s.keys)
	if err := c.Remove(context.Background(), "n9"); !errors.Is(err, kv.ErrUnknownOutcome) || len(s.keys) != n+1 {
		t.Fatalf("remove after an unknown outcome: %v, %d sends", err, len(s.keys)-n)
	}
}

func TestErrorsMatchSentinels(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   error
	}{
		{400, "missing key", kv.ErrInvalid},
		{413, "too big", kv.ErrTooLarge},
		{501, "nope", kv.ErrNotImplemented},
		{200, "false", kv.ErrCASMismatch},
		// Consul's 500 means several things: the code tells them apart.
		{500, "session: invalid session \"x\"", kv.ErrSession},
		{403, "acl_not_found: ACL not found", kv.ErrACLNotFound},
	}
	for _, tc := range cases {
		s := &script{statuses: []int{tc.status}, bodies: []string{tc.body}}
		srv := httptest.NewServer(s)
		err := newTestClient(t, srv.URL).Put(context.Background(), "k", nil, WithCAS(1))
		srv.Close()
		if !errors.Is(err, tc.want) {
			t.Fatalf("status %d: %v, want %v", tc.status, err, tc.want)
		}
	}
	// A 500 that names no code (not a raftkv node, or a proxy) is
	// reported as it is, and not retried as if it said "no leader".
	s := &script{statuses: []int{500, 500}, bodies: []string{"boom", "boom"}}
	srv := httptest.NewServer(s)
	err := newTestClient(t, srv.URL).Put(context.Background(), "k", nil)
	srv.Close()
	if err == nil || !strings.Contains(err.Error(), "unexpected status 500: boom") || len(s.keys) != 1 {
		t.Fatalf("a bare 500: %v after %d sends", err, len(s.keys))
	}
	// The server's reason is shown once, not after the sentinel's text.
	s = &script{}
	for range 100 {
		s.statuses, s.bodies = append(s.statuses, 500), append(s.bodies, "no_leader: No cluster leader")
	}
	srv = httptest.NewServer(s)
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = c.Put(ctx, "k", nil)
	cancel()
	srv.Close()
	if !errors.Is(err, kv.ErrNoLeader) || strings.Contains(err.Error(), "no leader: No cluster leader") {
		t.Fatalf("no leader: %v", err)
	}
	s = &script{statuses: []int{404}, bodies: []string{""}}
	srv = httptest.NewServer(s)
	defer srv.Close()
	if _, meta, err := newTestClient(t, srv.URL).Get(context.Background(), "k"); !errors.Is(err, kv.ErrNotFound) || meta.Index != 7 {
		t.Fatalf("get of a missing key: %v (index %d)", err, meta.Index)
	}
	if _, err := New(Config{}); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("no endpoints: %v", err)
	}
}

func TestGivesUpWhenTheContextEnds(t *testing.T) {
	c := newTestClient(t, deadAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, _, err := c.Get(ctx, "k"); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("all endpoints down: %v", err)
	}
}

// An endpoint that takes connections but never answers (its node cut off by
// the network) costs one attempt timeout, then the next endpoint answers.
func TestSilentEndpointLeftAfterAttemptTimeout(t *testing.T) {
	silent := silentServer(t)
	good := &script{statuses: []int{404}, bodies: []string{""}}
	b := httptest.NewServer(good)
	defer b.Close()
	c, err := New(Config{Endpoints: []string{silent.URL, b.URL}, Timeout: 30 * time.Second, AttemptTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Get(ctx, "k"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("read with one silent endpoint: %v", err)
	}
	if err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("write with one silent endpoint: %v", err)
	}
	if len(good.keys) != 2 {
		t.Fatalf("the answering endpoint saw %d requests, want 2", len(good.keys))
	}
}

// A call that reaches no endpoint gives up after UnreachableTimeout, not
// the whole Timeout, with an error that says it was not applied.
func TestUnreachableEndpointsGiveUpEarly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused from now on
	c, err := New(Config{Endpoints: []string{addr}, Timeout: time.Minute, UnreachableTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Put(context.Background(), "k", []byte("v"))
	if !errors.Is(err, kv.ErrNoLeader) || !strings.Contains(err.Error(), "no node reachable for 300ms") {
		t.Fatalf("put to a dead endpoint: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("gave up after %s, the whole timeout", d)
	}
}

// Once an attempt of a write may have applied, the call never ends as "not
// applied", whatever the other nodes answer after it.
func TestMaybeAppliedSticks(t *testing.T) {
	maybe := &script{statuses: []int{500}, bodies: []string{"unknown_outcome: lost leadership while committing"}}
	refusing := &script{}
	for range 200 {
		maybe.statuses, maybe.bodies = append(maybe.statuses, 500), append(maybe.bodies, "no_leader: No cluster leader")
		refusing.statuses, refusing.bodies = append(refusing.statuses, 500), append(refusing.bodies, "no_leader: No cluster leader")
	}
	a := httptest.NewServer(maybe)
	defer a.Close()
	b := httptest.NewServer(refusing)
	defer b.Close()
	c := newTestClient(t, a.URL, b.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, kv.ErrUnknownOutcome) || errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a write that may have applied ended as: %v", err)
	}
}

// A transaction op the token may not do is Consul's 409 with that op's
// error: the client still reports it as a denial, not a failed check.
func TestTxnDenialIsPermissionDenied(t *testing.T) {
	s := &script{statuses: []int{409}, bodies: []string{`{"Results":null,"Errors":[{"OpIndex":1,"What":"Permission denied: token with AccessorID 'a' lacks permission 'key:write' on \"k\""}]}`}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, err := newTestClient(t, srv.URL).Txn(context.Background(), []TxnOp{{Verb: "get", Key: "k"}, {Verb: "set", Key: "k"}})
	if !errors.Is(err, kv.ErrPermissionDenied) || errors.Is(err, kv.ErrTxnFailed) || !strings.Contains(err.Error(), "op 1: Permission denied") {
		t.Fatalf("a denied txn op: %v", err)
	}
}

// silentServer takes connections and never answers (a node cut off by the
// network), until the test ends.
func silentServer(t *testing.T) *httptest.Server {
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(silent.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handlers return, then Close
	return silent
}
