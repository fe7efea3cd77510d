package httpd

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/acl"
)

func TestUIServedWithoutToken(t *testing.T) {
	store := newTestStore(t)
	store.resolver = acl.NewResolver(memACL{}, false) // ACLs on, default deny
	srv := httptest.NewServer(New(allOf(store), Options{}))
	t.Cleanup(srv.Close)

	page := do(t, srv, "GET", "/ui/", "")
	if page.status != http.StatusOK || !strings.Contains(page.body, "<html") || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %q %q", page.status, page.header.Get("Content-Type"), page.body[:min(len(page.body), 80)])
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("Content-Security-Policy: %q", csp)
	}
	etag := page.header.Get("ETag")
	if r := do(t, srv, "GET", "/ui/", "", "If-None-Match", etag); etag == "" || r.status != http.StatusNotModified {
		t.Fatalf("revalidation with ETag %q: %d", etag, r.status)
	}
	if r := do(t, srv, "GET", "/ui/app.js", ""); r.status != http.StatusOK || !strings.Contains(r.header.Get("Content-Type"), "javascript") {
		t.Fatalf("GET /ui/app.js: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if r := do(t, srv, "GET", "/ui/README.md", ""); r.status != http.StatusNotFound {
		t.Fatalf("the source notes are not served: %d", r.status)
	}
	if r := do(t, srv, "GET", "/ui/nope.js", ""); r.status != http.StatusNotFound {
		t.Fatalf("unknown file: %d", r.status)
	}
	if r := do(t, srv, "PUT", "/ui/", "x"); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /ui/: %d", r.status)
	}
	// The page is open, the data is not.
	if r := do(t, srv, "GET", "/v1/kv/a", ""); r.status != http.StatusForbidden {
		t.Fatalf("a key without a token: %d", r.status)
	}
}

func TestRootRedirectsToUI(t *testing.T) {
	noFollow := func(srv *httptest.Server) *http.Client {
		c := srv.Client()
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return c
	}
	srv := httptest.NewServer(New(allOf(newTestStore(t)), Options{}))
	t.Cleanup(srv.Close)
	resp, err := noFollow(srv).Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if r := do(t, srv, "PUT", "/", "x"); r.status != http.StatusNotFound {
		t.Fatalf("PUT /: %d", r.status)
	}

	off := httptest.NewServer(New(allOf(newTestStore(t)), Options{DisableUI: true}))
	t.Cleanup(off.Close)
	for _, p := range []string{"/", "/ui/"} {
		if r := do(t, off, "GET", p, ""); r.status != http.StatusNotFound {
			t.Fatalf("GET %s with the UI off: %d", p, r.status)
		}
	}
}

func TestSessionKeys(t *testing.T) {
	store := newTestStore(t)
	store.hold(t, "s1", "n1", "app/lock")
	store.hold(t, "s1", "n1", "secret/lock")
	store.put(t, "app/free", "")
	store.hold(t, "s2", "other", "app/theirs")
	store.resolver = acl.NewResolver(memACL{
		tokens: map[string]*acl.Token{
			"reader": {AccessorID: "r", SecretID: "reader", Policies: []acl.PolicyLink{{ID: "p"}}},
			"root":   {AccessorID: "a", SecretID: "root", Policies: []acl.PolicyLink{{ID: "all"}}},
		},
		policies: map[string]*acl.Policy{
			"p": {ID: "p", Name: "p", Rules: `key_prefix "app/" { policy = "read" }
session_prefix "n1" { policy = "read" }`},
			"all": {ID: "all", Name: "all", Rules: `key_prefix "" { policy = "read" }
session_prefix "" { policy = "read" }`},
		},
	}, false)
	srv := httptest.NewServer(New(allOf(store), Options{}))
	t.Cleanup(srv.Close)

	r := do(t, srv, "GET", "/v1/session/keys", "", "X-Consul-Token", "reader")
	// s2 is another node's session; secret/lock is not readable.
	if r.status != http.StatusOK || r.body != "{\"s1\":[\"app/lock\"]}\n" || r.header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("held keys: %d %q %v", r.status, r.body, r.header)
	}
	if r := do(t, srv, "GET", "/v1/session/keys?stale", "", "X-Consul-Token", "root"); r.status != http.StatusOK ||
		r.body != "{\"s1\":[\"app/lock\",\"secret/lock\"],\"s2\":[\"app/theirs\"]}\n" || r.header.Get("X-Consul-Results-Filtered-By-ACLs") != "" {
		t.Fatalf("held keys, all visible: %d %q %v", r.status, r.body, r.header)
	}
	if r := do(t, srv, "GET", "/v1/session/keys?index=3", "", "X-Consul-Token", "reader"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "blocking") {
		t.Fatalf("a blocking query: %d %q", r.status, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/session/keys", "", "X-Consul-Token", "reader"); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", r.status)
	}
}
