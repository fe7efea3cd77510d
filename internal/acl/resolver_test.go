package acl

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

type memSource struct {
	index    uint64
	tokens   map[string]*Token
	policies map[string]*Policy
}

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
	src := &memSource{index: 1,
		tokens: map[string]*Token{
			"root": {AccessorID: "a-root", Policies: link(GlobalManagementID)},
			"app":  {AccessorID: "a-app", Policies: link("p-app", "p-gone")},
		},
		policies: map[string]*Policy{"p-app": {ID: "p-app", Rules: `key_prefix "app/" { policy = "write" }`}},
	}
	r := NewResolver(src, false)

	if _, err := r.Resolve("nope"); !errors.Is(err, kv.ErrACLNotFound) {
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
	want := `Permission denied: token with AccessorID 'a-app' lacks permission 'key:read' on "other"`
	if err := app.Denied("key", Read, "other"); !errors.Is(err, kv.ErrPermissionDenied) || err.Error() != want {
		t.Fatalf("denial: %v", err)
	}
	if err := app.Denied("operator", Write, ""); err.Error() != "Permission denied: token with AccessorID 'a-app' lacks permission 'operator:write'" {
		t.Fatalf("denial without a name: %v", err)
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
