package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

func consulWithToken(t *testing.T, addr, token string) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consul/api's ACL client against 3 nodes with ACLs on (default deny):
// policy and token CRUD, then KV with a limited token on a follower —
// allowed, denied, filtered listings — and the CLI's acl commands.
func TestConsulACLClient(t *testing.T) {
	c := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: buildOpts(), ACLs: true})
	_, followers := leaderAndFollowers(c)
	f := followers[0].Addr
	root := consulWithToken(t, f, proccluster.ManagementToken).ACL()

	// Policies.
	pol, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: "app", Description: "the app",
		Rules: "key_prefix \"app/\" { policy = \"write\" }\nkey \"app/private\" { policy = \"deny\" }\nkey_prefix \"shared/\" { policy = \"list\" }"}, nil)
	if err != nil || pol.ID == "" || pol.CreateIndex == 0 {
		t.Fatalf("policy create: %+v %v", pol, err)
	}
	if _, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: "app"}, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a second policy named app: %v", err)
	}
	if _, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: "bad", Rules: "key_prefix \"x\" { policy = \"sudo\" }"}, nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("rules that do not parse: %v", err)
	}
	if p, _, err := root.PolicyReadByName("app", nil); err != nil || p.ID != pol.ID {
		t.Fatalf("policy by name: %+v %v", p, err)
	}
	if p, _, err := root.PolicyReadByName("nope", nil); err != nil || p != nil {
		t.Fatalf("missing policy by name: %+v %v", p, err)
	}
	pol.Description = "the app, updated"
	if p, _, err := root.PolicyUpdate(pol, nil); err != nil || p.Description != pol.Description || p.ModifyIndex <= p.CreateIndex {
		t.Fatalf("policy update: %+v %v", p, err)
	}
	list, _, err := root.PolicyList(nil)
	names := map[string]bool{}
	for _, p := range list {
		names[p.Name] = true
	}
	if err != nil || !names["app"] || !names["global-management"] {
		t.Fatalf("policy list: %v %v", names, err)
	}

	// Tokens.
	tok, _, err := root.TokenCreate(&consul.ACLToken{Description: "app token", Policies: []*consul.ACLTokenPolicyLink{{Name: "app"}}}, nil)
	if err != nil || tok.SecretID == "" || len(tok.Policies) != 1 || tok.Policies[0].ID != pol.ID || tok.Policies[0].Name != "app" {
		t.Fatalf("token create: %+v %v", tok, err)
	}
	if got, _, err := root.TokenRead(tok.AccessorID, nil); err != nil || got.SecretID != tok.SecretID || got.Description != "app token" {
		t.Fatalf("token read: %+v %v", got, err)
	}
	clone, _, err := root.TokenClone(tok.AccessorID, "a clone", nil)
	if err != nil || clone.AccessorID == tok.AccessorID || clone.Description != "a clone" || len(clone.Policies) != 1 {
		t.Fatalf("token clone: %+v %v", clone, err)
	}
	clone.Description = "a clone, updated"
	if got, _, err := root.TokenUpdate(clone, nil); err != nil || got.Description != clone.Description || got.SecretID != clone.SecretID {
		t.Fatalf("token update: %+v %v", got, err)
	}
	tokens, _, err := root.TokenList(nil)
	seen := map[string]bool{}
	for _, e := range tokens {
		seen[e.AccessorID] = true
	}
	if err != nil || !seen[tok.AccessorID] || !seen[clone.AccessorID] || !seen["00000000-0000-0000-0000-000000000002"] {
		t.Fatalf("token list: %v %v", seen, err)
	}
	if _, err := root.TokenDelete(clone.AccessorID, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := root.TokenRead(clone.AccessorID, nil); err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("a deleted token read: %v", err)
	}
	if _, _, err := consulWithToken(t, f, clone.SecretID).KV().Get("app/x", nil); err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("a deleted token used: %v", err)
	}

	// KV with the limited token, on a follower.
	app := consulWithToken(t, f, tok.SecretID)
	if self, _, err := app.ACL().TokenReadSelf(nil); err != nil || self.AccessorID != tok.AccessorID {
		t.Fatalf("token self: %+v %v", self, err)
	}
	kv, rootKV := app.KV(), consulWithToken(t, f, proccluster.ManagementToken).KV()
	for _, k := range []string{"app/private", "other/x", "shared/a"} {
		if _, err := rootKV.Put(&consul.KVPair{Key: k, Value: []byte("root")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(&consul.KVPair{Key: "app/x", Value: []byte("mine")}, nil); err != nil {
		t.Fatalf("allowed write: %v", err)
	}
	if p, _, err := kv.Get("app/x", nil); err != nil || p == nil || string(p.Value) != "mine" {
		t.Fatalf("allowed read: %+v %v", p, err)
	}
	for _, denied := range []func() error{
		func() error { _, err := kv.Put(&consul.KVPair{Key: "other/x", Value: []byte("no")}, nil); return err },
		func() error {
			_, err := kv.Put(&consul.KVPair{Key: "app/private", Value: []byte("no")}, nil)
			return err
		},
		func() error { _, _, err := kv.Get("other/x", nil); return err },
		func() error { _, _, err := kv.Get("shared/a", nil); return err }, // list is not read
		func() error { _, err := kv.DeleteTree("app/", nil); return err }, // app/private inside
		func() error { _, _, err := app.ACL().TokenList(nil); return err },
	} {
		if err := denied(); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("a denied request: %v", err)
		}
	}
	if p, _, _ := rootKV.Get("other/x", nil); p == nil || string(p.Value) != "root" {
		t.Fatalf("a denied write changed other/x: %+v", p)
	}
	pairs, meta, err := kv.List("", nil)
	if err != nil || !meta.ResultsFilteredByACLs || len(pairs) != 1 || pairs[0].Key != "app/x" {
		t.Fatalf("filtered listing: %v filtered=%v %v", pairs, meta != nil && meta.ResultsFilteredByACLs, err)
	}
	keys, meta, err := kv.Keys("", "", nil)
	if err != nil || !meta.ResultsFilteredByACLs || strings.Join(keys, ",") != "app/x,shared/a" {
		t.Fatalf("filtered keys (list on shared/): %v %v", keys, err)
	}
	// A blocking query is filtered as well.
	_, meta, _ = kv.List("", nil)
	go func() { _, _ = rootKV.Put(&consul.KVPair{Key: "other/y", Value: []byte("wake")}, nil) }()
	pairs, meta2, err := kv.List("", &consul.QueryOptions{WaitIndex: meta.LastIndex})
	if err != nil || meta2.LastIndex <= meta.LastIndex || len(pairs) != 1 || !meta2.ResultsFilteredByACLs {
		t.Fatalf("filtered blocking query: %v %+v %v", pairs, meta2, err)
	}

	// The CLI: acl commands with --token and RAFTKV_TOKEN.
	cl := cli{t: t, endpoints: f}
	out := cl.ok("", "--token", proccluster.ManagementToken, "acl", "policy", "create", "--name", "cli", "--rules", `key_prefix "cli/" { policy = "write" }`)
	if !strings.Contains(out, "Name:         cli") {
		t.Fatalf("policy create: %s", out)
	}
	if out := cl.ok("", "--token", proccluster.ManagementToken, "acl", "policy", "list"); !strings.Contains(out, "cli") || !strings.Contains(out, "global-management") {
		t.Fatalf("policy list: %s", out)
	}
	if out := cl.ok("", "--token", proccluster.ManagementToken, "acl", "policy", "read", "--name", "cli"); !strings.Contains(out, `key_prefix "cli/"`) {
		t.Fatalf("policy read: %s", out)
	}
	out = cl.ok("", "--token", proccluster.ManagementToken, "-o", "json", "acl", "token", "create", "--policy-name", "cli", "--description", "from the cli")
	var created struct{ AccessorID, SecretID string }
	mustJSON(t, out, &created)
	t.Setenv("RAFTKV_TOKEN", created.SecretID)
	cl.ok("", "put", "cli/k", "v")
	cl.fails(1, "Permission denied", "put", "app/k", "v")
	if out := cl.ok("", "acl", "token", "read", "--self"); !strings.Contains(out, created.AccessorID) || !strings.Contains(out, "cli") {
		t.Fatalf("token read --self: %s", out)
	}
	os.Unsetenv("RAFTKV_TOKEN")
	if out := cl.ok("", "--token", proccluster.ManagementToken, "acl", "token", "list"); !strings.Contains(out, created.AccessorID) {
		t.Fatalf("token list: %s", out)
	}
	if out := cl.ok("", "--token", proccluster.ManagementToken, "acl", "token", "clone", "--id", created.AccessorID); !strings.Contains(out, "cli") {
		t.Fatalf("token clone: %s", out)
	}
	cl.ok("", "--token", proccluster.ManagementToken, "acl", "token", "delete", "--id", created.AccessorID)
	cl.fails(1, "ACL not found", "--token", created.SecretID, "get", "cli/k")
	cl.ok("", "--token", proccluster.ManagementToken, "acl", "policy", "delete", "--name", "cli")
	cl.fails(1, "Permission denied", "get", "cli/k") // anonymous, default deny
}

// The bootstrap through consul/api, once; the CLI's is refused after.
// Default allow: the anonymous token may do what no policy forbids.
func TestConsulACLBootstrap(t *testing.T) {
	c := proccluster.Start(t, 1, proccluster.Options{Root: "../..", Build: buildOpts(), Args: []string{"-acl-default-policy", "allow"}})
	addr := c.Procs[0].Addr
	boot, _, err := consulWithToken(t, addr, "").ACL().Bootstrap()
	if err != nil || boot.SecretID == "" || len(boot.Policies) != 1 || boot.Policies[0].Name != "global-management" {
		t.Fatalf("bootstrap: %+v %v", boot, err)
	}
	if _, _, err := consulWithToken(t, addr, "").ACL().Bootstrap(); err == nil || !strings.Contains(err.Error(), "ACL bootstrap no longer allowed") {
		t.Fatalf("second bootstrap: %v", err)
	}
	cl := cli{t: t, endpoints: addr}
	cl.fails(1, "ACL bootstrap no longer allowed", "acl", "bootstrap")
	cl.ok("", "put", "open/k", "v") // anonymous under allow
	root := consulWithToken(t, addr, boot.SecretID)
	pol, _, err := root.ACL().PolicyCreate(&consul.ACLPolicy{Name: "ro", Rules: `key_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ro, _, err := root.ACL().TokenCreate(&consul.ACLToken{Policies: []*consul.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl.fails(1, "Permission denied", "--token", ro.SecretID, "put", "open/k", "w")
	if out := cl.ok("", "--token", ro.SecretID, "get", "open/k"); out != "v\n" {
		t.Fatalf("read-only token read: %q", out)
	}
	if out, err := exec.Command(binary(t, "raftkv"), "--endpoints", addr, "--token", boot.SecretID, "acl", "token", "read", "--self").CombinedOutput(); err != nil || !strings.Contains(string(out), "global-management") {
		t.Fatalf("bootstrap token self: %v %s", err, out)
	}
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v in %q", err, s)
	}
}
