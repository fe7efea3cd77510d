package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

func aclEntry(index uint64, c *acl.Command) *kv.Op {
	return &kv.Op{Verb: kv.VerbACL, Value: EncodeACLCommand(c)}
}

// applyACL applies c at index and returns its refusal (nil: applied).
func applyACL(t *testing.T, f *FSM, index uint64, c *acl.Command) error {
	t.Helper()
	switch v := f.Apply(entry(index, *aclEntry(index, c))).(type) {
	case *kv.Result:
		return nil
	case error:
		return v
	default:
		t.Fatalf("apply %d: %T", index, v)
		return nil
	}
}

const (
	pid = "11111111-1111-1111-1111-111111111111"
	tid = "22222222-2222-2222-2222-222222222222"
)

func TestACLStateRules(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	must := func(idx uint64, c *acl.Command) {
		t.Helper()
		if err := applyACL(t, f, idx, c); err != nil {
			t.Fatalf("index %d: %v", idx, err)
		}
	}
	refused := func(idx uint64, c *acl.Command, sentinel error) {
		t.Helper()
		if err := applyACL(t, f, idx, c); !errors.Is(err, sentinel) {
			t.Fatalf("index %d: %v, want %v", idx, err, sentinel)
		}
	}
	must(1, &acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{AccessorID: "a1", SecretID: "root"}})
	refused(2, &acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{AccessorID: "a2", SecretID: "root2"}}, kv.ErrPermissionDenied)
	if idx, _ := f.ACLBootstrapIndex(); idx != 1 {
		t.Fatalf("bootstrap index %d", idx)
	}
	root, _ := f.ACLTokenBySecret("root")
	if root == nil || root.Policies[0].ID != acl.GlobalManagementID {
		t.Fatalf("bootstrap token: %+v", root)
	}

	must(3, &acl.Command{Op: acl.OpPolicySet, Create: true, Policy: &acl.Policy{ID: pid, Name: "web", Rules: `key_prefix "web/" { policy = "write" }`}})
	refused(4, &acl.Command{Op: acl.OpPolicySet, Create: true, Policy: &acl.Policy{ID: "other", Name: "web"}}, kv.ErrInvalid)
	refused(5, &acl.Command{Op: acl.OpPolicySet, Policy: &acl.Policy{ID: "missing", Name: "x"}}, kv.ErrACLNotFound)
	refused(6, &acl.Command{Op: acl.OpPolicySet, Policy: &acl.Policy{ID: acl.GlobalManagementID, Name: acl.GlobalManagementName, Rules: "acl = \"read\""}}, kv.ErrInvalid)
	refused(7, &acl.Command{Op: acl.OpPolicyDelete, ID: acl.GlobalManagementID}, kv.ErrInvalid)

	// A token names its policy by name; it is stored by ID.
	must(8, &acl.Command{Op: acl.OpTokenSet, Create: true, Token: &acl.Token{AccessorID: tid, SecretID: "s1", Policies: []acl.PolicyLink{{Name: "web"}}}})
	tok, _ := f.ACLTokenBySecret("s1")
	if tok == nil || len(tok.Policies) != 1 || tok.Policies[0].ID != pid || tok.CreateIndex != 8 {
		t.Fatalf("token: %+v", tok)
	}
	refused(9, &acl.Command{Op: acl.OpTokenSet, Create: true, Token: &acl.Token{AccessorID: "x", SecretID: "s1"}}, kv.ErrInvalid)
	refused(10, &acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: tid, SecretID: "changed"}}, kv.ErrInvalid)
	refused(11, &acl.Command{Op: acl.OpTokenSet, Create: true, Token: &acl.Token{AccessorID: "y", SecretID: "s2", Policies: []acl.PolicyLink{{Name: "nope"}}}}, kv.ErrInvalid)
	refused(12, &acl.Command{Op: acl.OpTokenDelete, ID: acl.AnonymousAccessorID}, kv.ErrInvalid)
	// An update keeps the secret and creation.
	must(13, &acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: tid, Description: "d"}})
	tok, _ = f.ACLToken(tid)
	if tok.SecretID != "s1" || tok.CreateIndex != 8 || tok.ModifyIndex != 13 || len(tok.Policies) != 0 {
		t.Fatalf("updated token: %+v", tok)
	}
	if f.ACLIndex() != 13 {
		t.Fatalf("ACL index %d, want 13", f.ACLIndex())
	}

	// ACL state travels in snapshots, with its index.
	var snap bytes.Buffer
	if _, err := f.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	g := mustOpen(t, t.TempDir())
	if err := g.Restore(io.NopCloser(&snap)); err != nil {
		t.Fatal(err)
	}
	if tok, _ := g.ACLTokenBySecret("s1"); tok == nil || tok.AccessorID != tid {
		t.Fatalf("restored token: %+v", tok)
	}
	if p, _ := g.ACLPolicyByName("web"); p == nil || p.ID != pid {
		t.Fatalf("restored policy: %+v", p)
	}
	if g.ACLIndex() != 13 {
		t.Fatalf("restored ACL index %d", g.ACLIndex())
	}

	must(14, &acl.Command{Op: acl.OpTokenDelete, ID: tid})
	must(15, &acl.Command{Op: acl.OpPolicyDelete, ID: pid})
	if tok, _ := f.ACLTokenBySecret("s1"); tok != nil {
		t.Fatal("deleted token still found by its secret")
	}
	if p, _ := f.ACLPolicyByName("web"); p != nil {
		t.Fatal("deleted policy still found by its name")
	}
}
