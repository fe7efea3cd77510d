package raftstore

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const rootSecret = "6f2bd32c-92b6-4b2a-9bd5-ef31ae3fd74e"

// aclCall makes one API request to node with token (sent as X-Consul-Token,
// or ?token= / Authorization: Bearer when token starts with "?"/"bearer ").
func aclCall(t *testing.T, s *RaftStore, method, path, token, body string) (int, string, http.Header) {
	t.Helper()
	url := "http://" + s.Addr() + path
	if tok, ok := strings.CutPrefix(token, "?"); ok {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		url += sep + "token=" + tok
		token = ""
	}
	req, err := http.NewRequestWithContext(ctx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := strings.CutPrefix(token, "bearer "); ok {
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

func aclMust(t *testing.T, s *RaftStore, method, path, token, body string, v any) {
	t.Helper()
	code, out, _ := aclCall(t, s, method, path, token, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, out)
		}
	}
}

type tokenOut struct{ AccessorID, SecretID string }

// Every endpoint, on a follower, with a token that may and one that may
// not: the one that may is never refused, the other gets Consul's 403
// and changes nothing. Node-to-node endpoints take no client token.
func TestACLsOnEveryEndpoint(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.ACLDefaultPolicy, cfg.ACLInitialManagement, cfg.ACLToken = "deny", rootSecret, rootSecret
	})
	f := c.nodes[c.followers()[0]]
	waitFor(t, 10*time.Second, "the initial management token", func() error {
		if code, out, _ := aclCall(t, f, "GET", "/v1/acl/token/self", rootSecret, ""); code != 200 {
			return fmt.Errorf("%d %s", code, out)
		}
		return nil
	})

	var pol struct{ ID string }
	aclMust(t, f, "PUT", "/v1/acl/policy", rootSecret, `{"Name":"web","Rules":"key_prefix \"web/\" { policy = \"write\" }\nkey \"web/secret\" { policy = \"deny\" }\nsession_prefix \"\" { policy = \"write\" }\noperator = \"read\""}`, &pol)
	var limited, nothing tokenOut
	aclMust(t, f, "PUT", "/v1/acl/token", rootSecret, `{"Description":"web","Policies":[{"Name":"web"}]}`, &limited)
	aclMust(t, f, "PUT", "/v1/acl/token", rootSecret, `{"Description":"nothing"}`, &nothing)
	for _, k := range []string{"web/a", "web/secret", "other/x"} {
		aclMust(t, f, "PUT", "/v1/kv/"+k, rootSecret, "v", nil)
	}
	L, N := limited.SecretID, nothing.SecretID
	var sess struct{ ID string }
	aclMust(t, f, "PUT", "/v1/session/create", rootSecret, `{"TTL":"60s"}`, &sess)
	var spare struct{ ID string }
	aclMust(t, f, "PUT", "/v1/acl/policy", rootSecret, `{"Name":"spare"}`, &spare)
	var spareTok tokenOut
	aclMust(t, f, "PUT", "/v1/acl/token", rootSecret, `{}`, &spareTok)

	// The exact refusal.
	code, body, _ := aclCall(t, f, "GET", "/v1/kv/other/x", L, "")
	want := fmt.Sprintf(`Permission denied: token with AccessorID '%s' lacks permission 'key:read' on "other/x"`, limited.AccessorID)
	if code != 403 || body != want {
		t.Fatalf("denied read: %d %q, want 403 %q", code, body, want)
	}
	if code, body, _ := aclCall(t, f, "GET", "/v1/kv/web/a", "not-a-token", ""); code != 403 || body != "ACL not found" {
		t.Fatalf("unknown token: %d %q", code, body)
	}
	if code, body, _ := aclCall(t, f, "GET", "/v1/kv/web/a", "", ""); code != 403 || body != `Permission denied: anonymous token lacks permission 'key:read' on "web/a". The anonymous token is used implicitly when a request does not specify a token.` {
		t.Fatalf("anonymous under deny: %d %q", code, body)
	}

	rows := []struct {
		method, path, body string
		allowed, denied    string
		perm               string // in the refusal
	}{
		{"GET", "/v1/kv/web/a", "", L, N, "key:read"},
		{"PUT", "/v1/kv/web/b", "x", L, N, "key:write"},
		{"PUT", "/v1/kv/other/y", "x", rootSecret, L, "key:write"},
		{"DELETE", "/v1/kv/web/b", "", L, N, "key:write"},
		{"DELETE", "/v1/kv/web/?recurse", "", rootSecret, L, "key:write"}, // web/secret is denied inside the prefix
		{"PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"web/t","Value":"eA=="}}]`, L, N, "key:write"},
		{"PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"web/t2","Value":"eA=="}},{"KV":{"Verb":"get","Key":"web/secret"}}]`, rootSecret, L, "key:read"},
		{"PUT", "/v1/txn", `[{"KV":{"Verb":"check-index","Key":"other/x","Index":1}}]`, rootSecret, L, "key:read"},
		{"GET", "/v1/snapshot", "", rootSecret, L, "acl:write"},
		{"GET", "/v1/operator/raft/configuration", "", L, N, "operator:read"},
		{"GET", "/v1/operator/autopilot/health", "", L, N, "operator:read"},
		{"DELETE", "/v1/operator/raft/peer?id=nobody", "", rootSecret, L, "operator:write"},
		{"POST", "/v1/operator/raft/transfer-leader?id=nobody", "", rootSecret, L, "operator:write"},
		{"PUT", "/v1/session/create", `{"TTL":"30s"}`, L, N, "session:write"},
		{"PUT", "/v1/session/renew/" + sess.ID, "", L, N, "session:write"},
		{"PUT", "/v1/session/destroy/" + sess.ID, "", L, N, "session:write"},
		{"PUT", "/v1/acl/policy/" + spare.ID, `{"Name":"spare","Description":"d"}`, rootSecret, L, "acl:write"},
		{"DELETE", "/v1/acl/policy/" + spare.ID, "", rootSecret, L, "acl:write"},
		{"PUT", "/v1/acl/token/" + spareTok.AccessorID, `{"Description":"d"}`, rootSecret, L, "acl:write"},
		{"DELETE", "/v1/acl/token/" + spareTok.AccessorID, "", rootSecret, L, "acl:write"},
		{"GET", "/v1/acl/policies", "", rootSecret, L, "acl:read"},
		{"GET", "/v1/acl/policy/" + pol.ID, "", rootSecret, L, "acl:read"},
		{"GET", "/v1/acl/policy/name/web", "", rootSecret, L, "acl:read"},
		{"PUT", "/v1/acl/policy", `{"Name":"p2"}`, rootSecret, L, "acl:write"},
		{"GET", "/v1/acl/tokens", "", rootSecret, L, "acl:read"},
		{"GET", "/v1/acl/token/" + nothing.AccessorID, "", rootSecret, L, "acl:read"},
		{"PUT", "/v1/acl/token", `{}`, rootSecret, L, "acl:write"},
		{"PUT", "/v1/acl/token/" + nothing.AccessorID + "/clone", `{}`, rootSecret, L, "acl:write"},
	}
	// Refused first: nothing may change.
	for _, row := range rows {
		code, body, _ := aclCall(t, f, row.method, row.path, row.denied, row.body)
		if row.path == "/v1/txn" {
			// Consul reports a denied transaction op as the op's error.
			if code != 409 || !strings.Contains(body, `"What":"Permission denied: token with AccessorID`) || !strings.Contains(body, "'"+row.perm+"'") {
				t.Errorf("%s %s with a token that may not: %d %q, want 409 with the op lacking %s", row.method, row.path, code, body, row.perm)
			}
			continue
		}
		if code != 403 || !strings.HasPrefix(body, "Permission denied: token with AccessorID") || !strings.Contains(body, "'"+row.perm+"'") {
			t.Errorf("%s %s with a token that may not: %d %q, want 403 lacking %s", row.method, row.path, code, body, row.perm)
		}
	}
	if code, _, _ := aclCall(t, f, "GET", "/v1/kv/other/y", rootSecret, ""); code != 404 {
		t.Errorf("a refused write landed: GET other/y = %d", code)
	}
	if code, _, _ := aclCall(t, f, "GET", "/v1/kv/web/secret", rootSecret, ""); code != 200 {
		t.Errorf("a refused recursive delete removed web/secret: %d", code)
	}
	for _, row := range rows {
		code, body, _ := aclCall(t, f, row.method, row.path, row.allowed, row.body)
		if code == 403 || code == 401 {
			t.Errorf("%s %s with a token that may: %d %s", row.method, row.path, code, body)
		}
	}
	for _, k := range []string{"web/a", "web/secret"} {
		aclMust(t, f, "PUT", "/v1/kv/"+k, rootSecret, "v", nil)
	}

	// Refused with no allowed twin here: a restore and a join.
	for _, row := range []struct{ method, path string }{
		{"PUT", "/v1/snapshot"},
		{"PUT", "/v1/operator/raft/peer?id=n9&address=127.0.0.1:1"},
	} {
		if code, body, _ := aclCall(t, f, row.method, row.path, L, "x"); code != 403 || !strings.HasPrefix(body, "Permission denied") {
			t.Errorf("%s %s with a token that may not: %d %s", row.method, row.path, code, body)
		}
	}
	// Sessions are listed only for nodes the token may read; agent/self
	// and agent/members want a valid token, any.
	if code, body, hdr := aclCall(t, f, "GET", "/v1/session/list", N, ""); code != 200 || body != "[]" || hdr.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Errorf("session list with no session rights: %d %s", code, body)
	}
	for _, p := range []string{"/v1/agent/self", "/v1/agent/members"} {
		if code, body, _ := aclCall(t, f, "GET", p, N, ""); code != 200 {
			t.Errorf("%s with a valid token: %d %s", p, code, body)
		}
		if code, body, _ := aclCall(t, f, "GET", p, "bogus", ""); code != 403 || body != "ACL not found" {
			t.Errorf("%s with an unknown token: %d %s", p, code, body)
		}
	}
	// A transaction's get-tree is filtered like a listing.
	if code, body, hdr := aclCall(t, f, "PUT", "/v1/txn", L, `[{"KV":{"Verb":"get-tree","Key":""}}]`); code != 200 || strings.Contains(body, "other/x") || hdr.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Errorf("txn get-tree: %d %s", code, body)
	}

	// Listings are filtered, not refused; every way of sending the token works.
	for _, tok := range []string{L, "?" + L, "bearer " + L} {
		code, body, hdr := aclCall(t, f, "GET", "/v1/kv/?recurse", tok, "")
		if code != 200 || hdr.Get("X-Consul-Results-Filtered-By-ACLs") != "true" || strings.Contains(body, "other/x") || strings.Contains(body, "web/secret") || !strings.Contains(body, "web/a") {
			t.Errorf("filtered listing (token %.8s): %d %s %v", tok, code, body, hdr)
		}
	}
	code, body, hdr := aclCall(t, f, "GET", "/v1/kv/?keys", L, "")
	if code != 200 || hdr.Get("X-Consul-Results-Filtered-By-ACLs") != "true" || strings.Contains(body, "other/") {
		t.Errorf("filtered keys: %d %s", code, body)
	}
	if code, body, _ := aclCall(t, f, "GET", "/v1/kv/?recurse", N, ""); code != 404 {
		t.Errorf("listing with nothing readable: %d %s, want 404", code, body)
	}

	// Open endpoints need no token; node-to-node ones take none.
	for _, p := range []string{"/v1/status/leader", "/v1/status/peers", "/healthz", "/metrics"} {
		if code, body, _ := aclCall(t, f, "GET", p, "", ""); code != 200 {
			t.Errorf("GET %s without a token: %d %s", p, code, body)
		}
	}
	if code, body, _ := aclCall(t, f, "GET", "/internal/v1/stats", rootSecret, ""); code != 403 {
		t.Errorf("node-to-node endpoint with the management token: %d %s", code, body)
	}
	if code, body, _ := aclCall(t, f, "PUT", "/v1/acl/bootstrap", "", ""); code != 403 || !strings.Contains(body, "ACL bootstrap no longer allowed") {
		t.Errorf("second bootstrap: %d %s", code, body)
	}

	// A deleted token stops working on every node, once each has applied it.
	aclMust(t, f, "DELETE", "/v1/acl/token/"+limited.AccessorID, rootSecret, "", nil)
	for _, s := range c.nodes {
		waitFor(t, 5*time.Second, "the deleted token to be refused", func() error {
			if code, body, _ := aclCall(t, s, "GET", "/v1/kv/web/a", L, ""); code != 403 || body != "ACL not found" {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
}
