package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

const (
	globalReadOnlyID = "00000000-0000-0000-0000-000000000002"
	anonymousHint    = "The anonymous token is used implicitly when a request does not specify a token."
)

// Consul's ACL behaviour as consul/api sees it, on a follower of 3 nodes
// with ACLs on (default deny): reads carry the query meta, the built-in
// global-read-only policy, the anonymous token's refusal, rules with
// words Consul does not have.
func TestConsulACLCompat(t *testing.T) {
	c := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: buildOpts(), ACLs: true})
	_, followers := leaderAndFollowers(c)
	f := followers[0].Addr
	root := consulWithToken(t, f, proccluster.ManagementToken).ACL()
	app, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: "app", Rules: `key_prefix "app/" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	appTok, _, err := root.TokenCreate(&consul.ACLToken{Description: "app", Policies: []*consul.ACLTokenPolicyLink{{ID: app.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Every ACL read reports a known leader and an index, as a KV read does.
	for name, read := range map[string]func() (*consul.QueryMeta, error){
		"PolicyRead":       func() (*consul.QueryMeta, error) { _, qm, err := root.PolicyRead(app.ID, nil); return qm, err },
		"PolicyReadByName": func() (*consul.QueryMeta, error) { _, qm, err := root.PolicyReadByName("app", nil); return qm, err },
		"PolicyList":       func() (*consul.QueryMeta, error) { _, qm, err := root.PolicyList(nil); return qm, err },
		"TokenRead": func() (*consul.QueryMeta, error) {
			_, qm, err := root.TokenRead(appTok.AccessorID, nil)
			return qm, err
		},
		"TokenReadSelf": func() (*consul.QueryMeta, error) { _, qm, err := root.TokenReadSelf(nil); return qm, err },
		"TokenList":     func() (*consul.QueryMeta, error) { _, qm, err := root.TokenList(nil); return qm, err },
	} {
		if qm, err := read(); err != nil || !qm.KnownLeader || qm.LastIndex < appTok.CreateIndex {
			t.Errorf("%s: %+v %v, want KnownLeader and an index of at least %d", name, qm, err, appTok.CreateIndex)
		}
	}

	// Both built-in policies are listed; global-read-only is read by ID
	// and by name (Consul's, and without its builtin/).
	list, _, err := root.PolicyList(nil)
	names := map[string]string{}
	for _, p := range list {
		names[p.ID] = p.Name
	}
	if err != nil || names["00000000-0000-0000-0000-000000000001"] != "global-management" || names[globalReadOnlyID] != "builtin/global-read-only" {
		t.Fatalf("policy list: %v %v", names, err)
	}
	for _, name := range []string{"builtin/global-read-only", "global-read-only"} {
		if p, _, err := root.PolicyReadByName(name, nil); err != nil || p == nil || p.ID != globalReadOnlyID {
			t.Fatalf("policy by name %q: %+v %v", name, p, err)
		}
	}
	ro, _, err := root.PolicyRead(globalReadOnlyID, nil)
	if err != nil || ro.Name != "builtin/global-read-only" || !strings.Contains(ro.Rules, `key_prefix "" {`) {
		t.Fatalf("policy by ID: %+v %v", ro, err)
	}

	// It cannot go, nor its rules change; a user policy cannot take its name.
	// (consul/api's PolicyDelete drops the answer's body: the reason is
	// read with a plain request.)
	if _, err := root.PolicyDelete(globalReadOnlyID, nil); err == nil || !strings.Contains(err.Error(), "Unexpected response code: 400") {
		t.Fatalf("delete global-read-only: %v", err)
	}
	req, _ := http.NewRequest("DELETE", "http://"+f+"/v1/acl/policy/"+globalReadOnlyID, nil)
	req.Header.Set("X-Consul-Token", proccluster.ManagementToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || strings.TrimSpace(string(body)) != "Deletion of the builtin builtin/global-read-only policy is not permitted" {
		t.Fatalf("delete global-read-only: %d %q", resp.StatusCode, body)
	}
	if p, _, err := root.PolicyRead(globalReadOnlyID, nil); err != nil || p.Name != "builtin/global-read-only" {
		t.Fatalf("global-read-only after a refused delete: %+v %v", p, err)
	}
	changed := *ro
	changed.Rules = `key_prefix "" { policy = "write" }`
	if _, _, err := root.PolicyUpdate(&changed, nil); err == nil || !strings.Contains(err.Error(), "Changing the Rules for the builtin builtin/global-read-only policy is not permitted") {
		t.Fatalf("change global-read-only's rules: %v", err)
	}
	if _, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: "builtin/global-read-only"}, nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a policy named builtin/global-read-only: %v", err)
	}
	described := *ro
	described.Description = "read everything"
	if p, _, err := root.PolicyUpdate(&described, nil); err != nil || p.Description != "read everything" || p.Rules != ro.Rules {
		t.Fatalf("describe global-read-only: %+v %v", p, err)
	}

	// A token with only global-read-only reads keys but writes none, and
	// sees tokens without their secrets.
	roTok, _, err := root.TokenCreate(&consul.ACLToken{Description: "reader", Policies: []*consul.ACLTokenPolicyLink{{Name: "builtin/global-read-only"}}}, nil)
	if err != nil || len(roTok.Policies) != 1 || roTok.Policies[0].ID != globalReadOnlyID {
		t.Fatalf("token with global-read-only: %+v %v", roTok, err)
	}
	if _, err := consulWithToken(t, f, proccluster.ManagementToken).KV().Put(&consul.KVPair{Key: "app/x", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	reader := consulWithToken(t, f, roTok.SecretID)
	if p, _, err := reader.KV().Get("app/x", nil); err != nil || p == nil || string(p.Value) != "v" {
		t.Fatalf("global-read-only read: %+v %v", p, err)
	}
	want := fmt.Sprintf("Unexpected response code: 403 (Permission denied: token with AccessorID '%s' lacks permission 'key:write' on \"app/x\")", roTok.AccessorID)
	if _, err := reader.KV().Put(&consul.KVPair{Key: "app/x", Value: []byte("w")}, nil); err == nil || err.Error() != want {
		t.Fatalf("global-read-only write: %v, want %s", err, want)
	}
	// In a transaction a denied op is that op's error (409), as in Consul.
	ok, txn, _, err := reader.KV().Txn(consul.KVTxnOps{
		{Verb: consul.KVGet, Key: "app/x"},
		{Verb: consul.KVSet, Key: "app/x", Value: []byte("w")},
	}, nil)
	wantWhat := strings.TrimSuffix(strings.TrimPrefix(want, "Unexpected response code: 403 ("), ")")
	if err != nil || ok || len(txn.Errors) != 1 || txn.Errors[0].OpIndex != 1 || txn.Errors[0].What != wantWhat {
		t.Fatalf("global-read-only txn: ok=%v %+v %v, want op 1: %s", ok, txn, err, wantWhat)
	}
	if other, _, err := reader.ACL().TokenRead(appTok.AccessorID, nil); err != nil || other.SecretID != "<hidden>" || other.Description != "app" {
		t.Fatalf("another token through global-read-only: %+v %v", other, err)
	}
	tokens, _, err := reader.ACL().TokenList(nil)
	if err != nil || len(tokens) < 4 {
		t.Fatalf("token list through global-read-only: %v %v", tokens, err)
	}
	for _, tok := range tokens {
		if tok.SecretID != "<hidden>" {
			t.Errorf("token list through global-read-only shows the secret of %s", tok.AccessorID)
		}
	}
	if self, _, err := reader.ACL().TokenReadSelf(nil); err != nil || self.SecretID != roTok.SecretID {
		t.Fatalf("its own token: %+v %v", self, err)
	}
	if _, _, err := reader.Snapshot().Save(nil); err == nil || !strings.Contains(err.Error(), "lacks permission 'acl:write'") {
		t.Fatalf("a snapshot (every secret) through global-read-only: %v", err)
	}
	if p, _, _ := consulWithToken(t, f, proccluster.ManagementToken).KV().Get("app/x", nil); p == nil || string(p.Value) != "v" {
		t.Fatalf("the refused write changed app/x: %+v", p)
	}

	// The anonymous token's refusal, in Consul's words.
	anon := consulWithToken(t, f, "")
	if _, _, err := anon.KV().Get("app/x", nil); err == nil ||
		err.Error() != "Unexpected response code: 403 (Permission denied: anonymous token lacks permission 'key:read' on \"app/x\". "+anonymousHint+")" {
		t.Fatalf("anonymous KV read: %v", err)
	}
	if _, _, err := anon.ACL().TokenList(nil); err == nil ||
		err.Error() != "Unexpected response code: 403 (Permission denied: anonymous token lacks permission 'acl:read'. "+anonymousHint+")" {
		t.Fatalf("anonymous token list: %v", err)
	}

	// Rules with a word Consul does not have: 400 naming it, nothing stored.
	for i, bad := range []struct{ rules, word string }{
		{`key_prefx "" { policy = "read" }`, `unknown block "key_prefx"`},
		{`key "" { polcy = "read" }`, `unknown field "polcy"`},
		{`operator = "rwrite"`, `"rwrite"`},
		{`{"key_prefx": {"": {"policy": "read"}}}`, `unknown block "key_prefx"`},
		{`{"key": {"": {"polcy": "read"}}}`, `unknown field "polcy"`},
		{`{"operator": "rwrite"}`, `"rwrite"`},
	} {
		name := fmt.Sprintf("bad-%d", i)
		_, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: name, Rules: bad.rules}, nil)
		if err == nil || !strings.Contains(err.Error(), "Unexpected response code: 400") || !strings.Contains(err.Error(), bad.word) {
			t.Errorf("rules %s: %v, want 400 naming %s", bad.rules, err, bad.word)
		}
		if p, _, err := root.PolicyReadByName(name, nil); err != nil || p != nil {
			t.Errorf("rules %s: policy %s stored: %+v %v", bad.rules, name, p, err)
		}
		app.Rules = bad.rules
		if _, _, err := root.PolicyUpdate(app, nil); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), bad.word) {
			t.Errorf("update to rules %s: %v", bad.rules, err)
		}
	}
	if p, _, err := root.PolicyRead(app.ID, nil); err != nil || p.Rules != `key_prefix "app/" { policy = "write" }` {
		t.Fatalf("refused updates changed the policy: %+v %v", p, err)
	}
}

// Before the bootstrap (default deny, no initial management token): the
// anonymous token and any secret are refused in Consul's words; after it,
// an unknown secret is plain "ACL not found".
func TestConsulACLBeforeBootstrap(t *testing.T) {
	// One node started by hand: proccluster.Start would wait for voters
	// with requests that, with no token at all, are refused.
	c := &proccluster.Cluster{TB: t, Opts: proccluster.Options{Root: "../..", Build: buildOpts(), Args: []string{"-acl-default-policy", "deny"}}}
	c.Procs = []*proccluster.Proc{{ID: "n1", Addr: fmt.Sprintf("127.0.0.1:%d", proccluster.FreePort(t)), Dir: t.TempDir()}}
	t.Cleanup(c.StopAll)
	c.StartProc(0)
	c.WaitReady(30 * time.Second)
	addr := c.Procs[0].Addr

	_, _, err := consulWithToken(t, addr, "").ACL().TokenList(nil)
	if want := "Unexpected response code: 403 (Permission denied: anonymous token lacks permission 'acl:read'. " + anonymousHint + ")"; err == nil || err.Error() != want {
		t.Fatalf("anonymous before the bootstrap: %v, want %s", err, want)
	}
	_, _, err = consulWithToken(t, addr, "root").ACL().TokenList(nil)
	if want := "Unexpected response code: 403 (ACL system must be bootstrapped before making any requests that require authorization: ACL not found)"; err == nil || err.Error() != want {
		t.Fatalf("a secret before the bootstrap: %v, want %s", err, want)
	}
	boot, _, err := consulWithToken(t, addr, "").ACL().Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	toks, _, err := consulWithToken(t, addr, boot.SecretID).ACL().TokenList(nil)
	if err != nil || len(toks) != 2 { // the bootstrap token and the anonymous one
		t.Fatalf("tokens after the bootstrap: %v %v", toks, err)
	}
	if _, _, err := consulWithToken(t, addr, "root").ACL().TokenList(nil); err == nil || err.Error() != "Unexpected response code: 403 (ACL not found)" {
		t.Fatalf("an unknown secret after the bootstrap: %v", err)
	}
}

// Agent().Members() on every node lists every server alive; a killed one
// is shown failed once the leader has not heard from it for 10 s, on every
// node still up, and alive again once it is back.
func TestConsulAgentMembers(t *testing.T) {
	c := startCluster(t, 3)
	leader, followers := leaderAndFollowers(c)
	statuses := func(addr string) (map[string]int, error) {
		members, err := client(t, addr).Agent().Members(false)
		if err != nil {
			return nil, err
		}
		out := map[string]int{}
		for _, m := range members {
			out[m.Name] = m.Status
		}
		return out, nil
	}
	for _, p := range c.Procs {
		members, err := client(t, p.Addr).Agent().Members(false)
		if err != nil || len(members) != len(c.Procs) {
			t.Fatalf("members on %s: %+v %v", p.ID, members, err)
		}
		for _, m := range members {
			var want *proccluster.Proc
			for _, q := range c.Procs {
				if q.ID == m.Name {
					want = q
				}
			}
			if want == nil || fmt.Sprintf("%s:%d", m.Addr, m.Port) != want.Addr || m.Status != 1 || !m.IsConsulServer() || m.Tags["dc"] != "dc1" {
				t.Fatalf("member %+v on %s", m, p.ID)
			}
		}
	}

	killed := followers[0]
	var ki int
	for i, p := range c.Procs {
		if p == killed {
			ki = i
		}
	}
	c.Kill(ki)
	for _, p := range []*proccluster.Proc{leader, followers[1]} {
		testsupport.WaitFor(t, 30*time.Second, killed.ID+" failed on "+p.ID, func() error {
			st, err := statuses(p.Addr)
			if err != nil {
				return err
			}
			if st[killed.ID] != 4 || st[leader.ID] != 1 || st[followers[1].ID] != 1 || len(st) != 3 {
				return fmt.Errorf("statuses %v", st)
			}
			return nil
		})
	}
	c.StartProc(ki)
	testsupport.WaitFor(t, 30*time.Second, killed.ID+" alive again", func() error {
		st, err := statuses(followers[1].Addr)
		if err == nil && st[killed.ID] != 1 {
			err = fmt.Errorf("statuses %v", st)
		}
		return err
	})
	// The WAN pool: the same servers, under their WAN names.
	wan, err := client(t, leader.Addr).Agent().Members(true)
	if err != nil || len(wan) != 3 || !strings.HasSuffix(wan[0].Name, ".dc1") {
		t.Fatalf("WAN members: %+v %v", wan, err)
	}
}
