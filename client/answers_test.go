package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

func hostPort(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A call that gives up says what every endpoint last answered, not only
// the one asked last.
func TestGivingUpListsEveryEndpointsAnswer(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "node closed", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	silent := silentServer(t)
	dead := deadAddr(t)
	c, err := New(Config{Endpoints: []string{busy.URL, dead, silent.URL}, Timeout: 1500 * time.Millisecond, AttemptTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Get(context.Background(), "app/k")
	if !errors.Is(err, kv.ErrNoLeader) && !errors.Is(err, kv.ErrClosed) && !errors.Is(err, kv.ErrUnknownOutcome) {
		t.Fatalf("get: %v", err)
	}
	for _, want := range []string{
		"GET /v1/kv/app/k: no node could serve this: ",
		hostPort(t, busy.URL) + ": node closed",
		dead + ": connection refused",
		hostPort(t, silent.URL) + ": timed out",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("the error does not say %q:\n%v", want, err)
		}
	}
	// Time runs out while an endpoint is being asked: still every answer.
	c, err = New(Config{Endpoints: []string{busy.URL, silent.URL}, Timeout: 500 * time.Millisecond, AttemptTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Put(context.Background(), "app/k", nil)
	if err == nil || !strings.Contains(err.Error(), hostPort(t, busy.URL)+": node closed") || !strings.Contains(err.Error(), hostPort(t, silent.URL)+": timed out") {
		t.Fatalf("put that ran out of time on a silent endpoint: %v", err)
	}
	// One endpoint: its answer alone, with the whole request.
	c = newTestClient(t, dead)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, _, err := c.Get(ctx, "app/k", Stale()); err == nil || !strings.HasPrefix(err.Error(), "GET http://"+dead+"/v1/kv/app/k?stale=: connection refused") {
		t.Fatalf("get from one dead endpoint: %v", err)
	}
}

// A 404 is "key not found" only when it is a key read's answer (which
// carries X-Consul-Index); from anything else (another server, a wrong
// path) it is an unexpected answer, said as such and not retried.
func TestA404FromSomethingElseIsNotKeyNotFound(t *testing.T) {
	other := httptest.NewServer(http.NotFoundHandler()) // "404 page not found", no X-Consul-Index
	defer other.Close()
	c := newTestClient(t, other.URL)
	ctx := context.Background()
	wantUnexpected := func(what, path string, err error) {
		t.Helper()
		want := "unexpected answer from " + path + ": 404 404 page not found (is this a raftkv node?)"
		if err == nil || errors.Is(err, kv.ErrNotFound) || !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v\nwant: %s", what, err, want)
		}
	}
	_, _, err := c.Get(ctx, "app/k")
	wantUnexpected("get", "GET "+other.URL+"/v1/kv/app/k", err)
	_, _, err = c.List(ctx, "app/")
	wantUnexpected("list", "GET "+other.URL+"/v1/kv/app/?recurse=", err)
	_, _, err = c.Keys(ctx, "app/", "/")
	wantUnexpected("keys", "GET "+other.URL+"/v1/kv/app/?keys=&separator=%2F", err)
	err = c.Remove(ctx, "n9")
	wantUnexpected("remove", "DELETE "+other.URL+"/v1/operator/raft/peer?id=n9", err)
	_, err = c.RenewSession(ctx, "s1")
	wantUnexpected("renew", "PUT "+other.URL+"/v1/session/renew/s1", err)
	_, err = c.AutopilotHealth(ctx)
	wantUnexpected("health", "GET "+other.URL+"/v1/operator/autopilot/health", err)
	_, err = c.TokenSelf(ctx)
	wantUnexpected("token self", "GET "+other.URL+"/v1/acl/token/self", err)

	// A body that is not the JSON expected is unexpected too, and no Go
	// type name shows.
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>hello</html>"))
	}))
	defer html.Close()
	_, _, err = newTestClient(t, html.URL).Get(ctx, "app/k")
	if err == nil || !strings.Contains(err.Error(), "unexpected answer from GET "+html.URL+"/v1/kv/app/k: 200 <html>hello</html>") || strings.Contains(err.Error(), "wire.") {
		t.Fatalf("get from a web server: %v", err)
	}

	// raftkv's own answers keep their meaning.
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			w.Header().Set("X-Consul-Index", "9")
			w.WriteHeader(http.StatusNotFound)
		case strings.HasPrefix(r.URL.Path, "/v1/session/renew/"):
			http.Error(w, "Session id 's1' not found", http.StatusNotFound)
		default:
			http.Error(w, `unknown peer: "n9" is not a member`, http.StatusNotFound)
		}
	}))
	defer node.Close()
	c = newTestClient(t, node.URL)
	if _, meta, err := c.Get(ctx, "app/k"); !errors.Is(err, kv.ErrNotFound) || meta.Index != 9 {
		t.Fatalf("a missing key: %v (index %d)", err, meta.Index)
	}
	if entries, _, err := c.List(ctx, "app/"); err != nil || len(entries) != 0 {
		t.Fatalf("an empty prefix: %v %v", entries, err)
	}
	if _, err := c.RenewSession(ctx, "s1"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("a gone session: %v", err)
	}
	if err := c.Remove(ctx, "n9"); !errors.Is(err, kv.ErrUnknownPeer) || err.Error() != `unknown peer: "n9" is not a member` {
		t.Fatalf("remove of a non-member: %q", err)
	}
}

// A key with a leading "/" is refused before anything is sent, naming the
// key (as consul/api does), never the URL the client would have built;
// so is a key no path can name.
func TestKeysThatNoPathCanNameAreRefused(t *testing.T) {
	s := &script{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx := context.Background()
	for _, call := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"put", func() error { return c.Put(ctx, "/abs/key", []byte("v")) }, `key "/abs/key" begins with "/": keys are relative, as in Consul (did you mean "abs/key"?)`},
		{"get", func() error { _, _, err := c.Get(ctx, "/abs/key"); return err }, `did you mean "abs/key"?`},
		{"delete", func() error { return c.Delete(ctx, "/abs/", Recurse()) }, `did you mean "abs/"?`},
		{"put a//b", func() error { return c.Put(ctx, "a//b", nil) }, `key "a//b" has an empty, "." or ".." segment`},
		{"put a/../b", func() error { return c.Put(ctx, "a/../b", nil) }, `key "a/../b" has an empty`},
	} {
		err := call.fn()
		if !errors.Is(err, kv.ErrInvalid) || !strings.Contains(err.Error(), call.want) || strings.Contains(err.Error(), "/v1/kv") {
			t.Fatalf("%s: %v", call.name, err)
		}
	}
	if len(s.keys) != 0 {
		t.Fatalf("%d requests were sent", len(s.keys))
	}
	// Keys that are fine: a prefix, a key with a trailing slash.
	if err := c.Delete(ctx, "app/", Recurse()); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "app/dir/", nil); err != nil {
		t.Fatal(err)
	}
}

// A CAS that loses says which check it made; the answer ("false") says
// no more.
func TestCASLossSaysWhatWasChecked(t *testing.T) {
	s := &script{statuses: []int{200, 200}, bodies: []string{"false", "false"}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	if err := c.Put(context.Background(), "k", nil, WithCAS(0)); !errors.Is(err, kv.ErrCASMismatch) || !strings.Contains(err.Error(), `key "k" already exists (cas=0)`) {
		t.Fatalf("cas=0: %v", err)
	}
	if err := c.Put(context.Background(), "k", nil, WithCAS(5)); !errors.Is(err, kv.ErrCASMismatch) || !strings.Contains(err.Error(), `key "k" does not exist or was modified (cas=5)`) {
		t.Fatalf("cas=5: %v", err)
	}
}
