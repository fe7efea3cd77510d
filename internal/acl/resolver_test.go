package acl

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

type memSource struct {
	index     uint64
	tokens    map[string]*Token
	policies  map[string]*Policy
	bootstrap uint64 // the bootstrap's index, 0 before it
}

func (m *memSource) ACLBootstrapIndex() (uint64, error) { return m.bootstrap, nil }

func (m *memSource) ACLIndex() uint64                          { return m.index }
func (m *memSource) ACLTokenBySecret(s string) (*Token, error) { return m.tokens[s], nil }
func (m *memSource) ACLPolicy(id string) (*Policy, error)      { return m.policies[id], nil }
func link(ids ...string) (out []PolicyLink) {
	for _, id := range ids {
		out = append(out, PolicyLink{ID: id})
	}
	return out
}

func TestResolver(t *testing.T) {
	src := &memSource{index: 1, bootstrap: 1,
		tokens: map[string]*Token{
			"root": {AccessorID: "a-root", Policies: link(GlobalManagementID)},
			"app":  {AccessorID: "a-app", Policies: link("p-app", "p-gone")},
			"ro":   {AccessorID: "a-ro", Policies: link(GlobalReadOnlyID)},
		},
		policies: map[string]*Policy{"p-app": {ID: "p-app", Rules: `key_prefix "app/" { policy = "write" }`}},
	}
	r := NewResolver(src, false)

	if _, err := r.Resolve("nope"); !errors.Is(err, kv.ErrACLNotFound) || err.Error() != "ACL not found" {
		t.Fatalf("unknown secret: %v", err)
	}
	anon, err := r.Resolve("")
	if err != nil || anon.AccessorID != AnonymousAccessorID || anon.KeyRead("x") {
		t.Fatalf("anonymous under deny: %+v %v", anon, err)
	}
	root, _ := r.Resolve("root")
	if !root.ACLWrite() || !root.KeyWritePrefix("") {
		t.Fatal("a token with global-management is a management token")
	}
	app, _ := r.Resolve("app")
	if !app.KeyWrite("app/x") || app.KeyRead("other") {
		t.Fatal("app token: write app/, nothing else (a deleted policy grants nothing)")
	}
	// The built-in global-read-only, never stored, is found by its ID.
	if ro, err := r.Resolve("ro"); err != nil || !ro.KeyRead("x") || !ro.ACLRead() || ro.KeyWrite("x") || ro.ACLWrite() {
		t.Fatalf("a global-read-only token: %v", err)
	}
	want := `Permission denied: token with AccessorID 'a-app' lacks permission 'key:read' on "other"`
	if err := app.Denied("key", Read, "other"); !errors.Is(err, kv.ErrPermissionDenied) || err.Error() != want {
		t.Fatalf("denial: %v", err)
	}
	if err := app.Denied("operator", Write, ""); err.Error() != "Permission denied: token with AccessorID 'a-app' lacks permission 'operator:write'" {
		t.Fatalf("denial without a name: %v", err)
	}

	// The anonymous token is named as Consul names it, with its hint;
	// a name is quoted as Consul does, without escaping.
	if err := anon.Denied("key", Write, `a"b`); err.Error() != `Permission denied: anonymous token lacks permission 'key:write' on "a"b". The anonymous token is used implicitly when a request does not specify a token.` {
		t.Fatalf("anonymous denial: %v", err)
	}
	if err := anon.Denied("acl", Read, ""); !errors.Is(err, kv.ErrPermissionDenied) ||
		err.Error() != "Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token." {
		t.Fatalf("anonymous denial without a name: %v", err)
	}

	// A change to the ACL state (a higher index) is seen at once.
	src.policies["p-app"] = &Policy{ID: "p-app", Rules: `key_prefix "app/" { policy = "read" }`}
	if app, _ := r.Resolve("app"); !app.KeyWrite("app/x") {
		t.Fatal("without an index change the cached identity stands")
	}
	src.index = 2
	if app, _ := r.Resolve("app"); app.KeyWrite("app/x") || !app.KeyRead("app/x") {
		t.Fatal("a changed policy must take effect with the new index")
	}
	delete(src.tokens, "app")
	src.index = 3
	if _, err := r.Resolve("app"); !errors.Is(err, kv.ErrACLNotFound) {
		t.Fatalf("a deleted token: %v", err)
	}
}

// Before the bootstrap no token exists: a secret is refused in Consul's
// words for that (still "ACL not found" to errors.Is); the anonymous
// token works as ever.
func TestResolverBeforeBootstrap(t *testing.T) {
	src := &memSource{index: 0}
	r := NewResolver(src, false)
	_, err := r.Resolve("some-secret")
	want := "ACL system must be bootstrapped before making any requests that require authorization: ACL not found"
	if !errors.Is(err, kv.ErrACLNotFound) || err.Error() != want {
		t.Fatalf("before the bootstrap: %v", err)
	}
	if anon, err := r.Resolve(""); err != nil || anon.AccessorID != AnonymousAccessorID {
		t.Fatalf("anonymous before the bootstrap: %v", err)
	}
	src.bootstrap, src.index = 5, 5
	if _, err := r.Resolve("some-secret"); err == nil || err.Error() != "ACL not found" {
		t.Fatalf("after the bootstrap: %v", err)
	}
}
