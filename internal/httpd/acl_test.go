package httpd

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// fixedACL is a fixed ACL state, both the resolver's source and what the
// ACL endpoints read.
type fixedACL struct {
	index, bootstrap uint64
	tokens           []acl.Token
	policies         []acl.Policy
}

func (m *fixedACL) ACLIndex() uint64                   { return m.index }
func (m *fixedACL) ACLBootstrapIndex() (uint64, error) { return m.bootstrap, nil }
func (m *fixedACL) ACLPolicy(id string) (*acl.Policy, error) {
	for i := range m.policies {
		if m.policies[i].ID == id {
			return &m.policies[i], nil
		}
	}
	return nil, nil
}
func (m *fixedACL) ACLPolicyByName(name string) (*acl.Policy, error) {
	for i := range m.policies {
		if m.policies[i].Name == name {
			return &m.policies[i], nil
		}
	}
	return nil, nil
}
func (m *fixedACL) ACLPolicies() ([]acl.Policy, error) {
	return append([]acl.Policy(nil), m.policies...), nil
}
func (m *fixedACL) ACLToken(accessor string) (*acl.Token, error) {
	for i := range m.tokens {
		if m.tokens[i].AccessorID == accessor {
			return &m.tokens[i], nil
		}
	}
	return nil, nil
}
func (m *fixedACL) ACLTokenBySecret(secret string) (*acl.Token, error) {
	for i := range m.tokens {
		if m.tokens[i].SecretID == secret {
			return &m.tokens[i], nil
		}
	}
	return nil, nil
}
func (m *fixedACL) ACLTokens() ([]acl.Token, error) {
	return append([]acl.Token(nil), m.tokens...), nil
}

// aclStore is the test store with ACLs on over a fixedACL; applied counts
// the ACL changes that reached it. leader, view and noView change what it
// says of the cluster (for agent/members).
type aclStore struct {
	*testStore
	st *fixedACL

	mu      sync.Mutex
	applied int
	leader  *[2]string        // addr, id; nil: the fake's
	noView  bool              // AutopilotHealth fails
	view    map[string]string // ID → SerfStatus the leader reports
}

func (s *aclStore) ACLState(context.Context, bool) (ACLReader, error) { return s.st, nil }
func (s *aclStore) ApplyACL(context.Context, *acl.Command) (*kv.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied++
	return nil, kv.Errorf(kv.ErrInvalid, "the test store applies nothing")
}
func (s *aclStore) Leader() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader != nil {
		return s.leader[0], s.leader[1]
	}
	return s.testStore.Leader()
}
func (s *aclStore) AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error) {
	s.mu.Lock()
	noView, view := s.noView, s.view
	s.mu.Unlock()
	if noView {
		return kv.AutopilotHealth{}, kv.ErrNoLeader
	}
	h, err := s.testStore.AutopilotHealth(ctx)
	for i := range h.Servers {
		if st, ok := view[h.Servers[i].ID]; ok {
			h.Servers[i].SerfStatus = st
		}
	}
	return h, err
}

const (
	rootSecret  = "11111111-1111-1111-1111-111111111111"
	roSecret    = "22222222-2222-2222-2222-222222222222"
	appSecret   = "33333333-3333-3333-3333-333333333333"
	roAccessor  = "aaaaaaaa-0000-0000-0000-00000000000b"
	appAccessor = "aaaaaaaa-0000-0000-0000-00000000000c"
)

func newACLServer(t *testing.T, bootstrapped bool) (*httptest.Server, *aclStore) {
	t.Helper()
	store := newACLStore(t, bootstrapped)
	srv := httptest.NewServer(New(allOf(store), Options{MaxValueBytes: testMaxValue}))
	t.Cleanup(srv.Close)
	return srv, store
}

// newACLStore is newACLServer's store, for tests that serve more than
// allOf does.
func newACLStore(t *testing.T, bootstrapped bool) *aclStore {
	t.Helper()
	st := &fixedACL{index: 7,
		tokens: []acl.Token{
			{AccessorID: "aaaaaaaa-0000-0000-0000-00000000000a", SecretID: rootSecret, Policies: []acl.PolicyLink{{ID: acl.GlobalManagementID}}},
			{AccessorID: roAccessor, SecretID: roSecret, Policies: []acl.PolicyLink{{ID: acl.GlobalReadOnlyID}}},
			{AccessorID: appAccessor, SecretID: appSecret, Policies: []acl.PolicyLink{{ID: "p-app"}}},
		},
		policies: []acl.Policy{{ID: "p-app", Name: "app", Rules: `key_prefix "app/" { policy = "write" }`}},
	}
	if bootstrapped {
		st.bootstrap = 3
	} else {
		st.tokens = nil
	}
	store := &aclStore{testStore: newTestStore(t), st: st}
	store.resolver = acl.NewResolver(st, false) // default deny
	return store
}

// Every ACL read carries a KV read's query meta.
func TestACLReadsCarryQueryMeta(t *testing.T) {
	srv, _ := newACLServer(t, true)
	for _, path := range []string{
		"/v1/acl/policy/p-app", "/v1/acl/policy/name/app", "/v1/acl/policies",
		"/v1/acl/token/" + appAccessor, "/v1/acl/token/self", "/v1/acl/tokens",
		"/v1/acl/policy/" + acl.GlobalReadOnlyID, "/v1/acl/tokens?stale",
	} {
		r := do(t, srv, "GET", path, "", "X-Consul-Token", rootSecret)
		want := "consistent"
		if strings.HasSuffix(path, "?stale") {
			want = "stale"
		}
		if r.status != 200 || r.header.Get("X-Consul-Index") != "7" || r.header.Get("X-Consul-KnownLeader") != "true" ||
			r.header.Get("X-Consul-LastContact") != "0" || r.header.Get("X-Consul-Effective-Consistency") != want {
			t.Errorf("GET %s: %d %v %s", path, r.status, r.header, r.body)
		}
	}
	// Through consul/api: KnownLeader and LastIndex.
	c := consulClient(t, srv, rootSecret).ACL()
	_, qm, err := c.PolicyRead("p-app", nil)
	if err != nil || !qm.KnownLeader || qm.LastIndex != 7 {
		t.Fatalf("PolicyRead: %+v %v", qm, err)
	}
	if _, qm, err := c.TokenReadSelf(nil); err != nil || !qm.KnownLeader || qm.LastIndex != 7 {
		t.Fatalf("TokenReadSelf: %+v %v", qm, err)
	}
}

func consulClient(t *testing.T, srv *httptest.Server, token string) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: strings.TrimPrefix(srv.URL, "http://"), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The built-in global-read-only policy: listed, read by ID and by name,
// and a token with it reads everything but other tokens' secrets.
func TestGlobalReadOnlyPolicy(t *testing.T) {
	srv, store := newACLServer(t, true)
	root := consulClient(t, srv, rootSecret).ACL()
	list, _, err := root.PolicyList(nil)
	names := map[string]string{}
	for _, p := range list {
		names[p.ID] = p.Name
	}
	if err != nil || names[acl.GlobalManagementID] != "global-management" || names[acl.GlobalReadOnlyID] != "builtin/global-read-only" || names["p-app"] != "app" {
		t.Fatalf("policy list: %v %v", names, err)
	}
	for _, read := range []func() (*consul.ACLPolicy, *consul.QueryMeta, error){
		func() (*consul.ACLPolicy, *consul.QueryMeta, error) {
			return root.PolicyRead(acl.GlobalReadOnlyID, nil)
		},
		func() (*consul.ACLPolicy, *consul.QueryMeta, error) {
			return root.PolicyReadByName("builtin/global-read-only", nil)
		},
		func() (*consul.ACLPolicy, *consul.QueryMeta, error) {
			return root.PolicyReadByName("global-read-only", nil)
		},
	} {
		if p, _, err := read(); err != nil || p == nil || p.ID != acl.GlobalReadOnlyID || !strings.Contains(p.Rules, `acl = "read"`) {
			t.Fatalf("read global-read-only: %+v %v", p, err)
		}
	}

	ro := consulClient(t, srv, roSecret)
	store.put(t, "app/x", "v")
	if p, _, err := ro.KV().Get("app/x", nil); err != nil || p == nil {
		t.Fatalf("read-only KV read: %+v %v", p, err)
	}
	if _, err := ro.KV().Put(&consul.KVPair{Key: "app/x", Value: []byte("no")}, nil); err == nil ||
		!strings.Contains(err.Error(), "403 (Permission denied: token with AccessorID '"+roAccessor+"' lacks permission 'key:write' on \"app/x\")") {
		t.Fatalf("read-only KV write: %v", err)
	}
	if tok, _, err := ro.ACL().TokenRead(appAccessor, nil); err != nil || tok.SecretID != "<hidden>" || tok.AccessorID != appAccessor {
		t.Fatalf("another token's secret: %+v %v", tok, err)
	}
	toks, _, err := ro.ACL().TokenList(nil)
	if err != nil || len(toks) != 4 { // three and the anonymous one
		t.Fatalf("token list: %v %v", toks, err)
	}
	for _, tok := range toks {
		if tok.SecretID != "<hidden>" {
			t.Errorf("token list shows %s's secret", tok.AccessorID)
		}
	}
	if self, _, err := ro.ACL().TokenReadSelf(nil); err != nil || self.SecretID != roSecret || len(self.Policies) != 1 || self.Policies[0].Name != "builtin/global-read-only" {
		t.Fatalf("self: %+v %v", self, err)
	}
	if _, _, err := ro.ACL().PolicyCreate(&consul.ACLPolicy{Name: "nope"}, nil); err == nil || !strings.Contains(err.Error(), "lacks permission 'acl:write'") {
		t.Fatalf("read-only policy create: %v", err)
	}
	if store.applied != 0 {
		t.Fatalf("%d ACL changes reached the store", store.applied)
	}
}

// Consul's refusals of the anonymous token and, before the bootstrap, of
// any secret.
func TestACLRefusalTexts(t *testing.T) {
	srv, _ := newACLServer(t, true)
	for _, c := range []struct{ path, want string }{
		{"/v1/kv/app/x", `Permission denied: anonymous token lacks permission 'key:read' on "app/x". The anonymous token is used implicitly when a request does not specify a token.`},
		{"/v1/acl/tokens", `Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token.`},
	} {
		if r := do(t, srv, "GET", c.path, ""); r.status != 403 || strings.TrimSpace(r.body) != c.want {
			t.Errorf("anonymous GET %s: %d %q", c.path, r.status, r.body)
		}
	}
	if r := do(t, srv, "GET", "/v1/kv/app/x", "", "X-Consul-Token", "unknown"); r.status != 403 || strings.TrimSpace(r.body) != "ACL not found" {
		t.Errorf("unknown token after the bootstrap: %d %q", r.status, r.body)
	}

	srv, _ = newACLServer(t, false)
	if r := do(t, srv, "GET", "/v1/acl/tokens", "", "X-Consul-Token", rootSecret); r.status != 403 ||
		strings.TrimSpace(r.body) != "ACL system must be bootstrapped before making any requests that require authorization: ACL not found" {
		t.Errorf("a token before the bootstrap: %d %q", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/acl/tokens", ""); r.status != 403 || !strings.HasPrefix(r.body, "Permission denied: anonymous token lacks permission 'acl:read'.") {
		t.Errorf("anonymous before the bootstrap: %d %q", r.status, r.body)
	}
}

// Rules with a word Consul does not have are refused with 400 naming it,
// and never reach the store.
func TestBadRulesRefused(t *testing.T) {
	srv, store := newACLServer(t, true)
	root := consulClient(t, srv, rootSecret).ACL()
	for _, c := range []struct{ rules, word string }{
		{`key_prefx "" { policy = "read" }`, `unknown block "key_prefx"`},
		{`key "" { polcy = "read" }`, `unknown field "polcy"`},
		{`operator = "rwrite"`, `Invalid operator policy: "rwrite"`},
		{`{"key_prefx": {"": {"policy": "read"}}}`, `unknown block "key_prefx"`},
		{`{"key": {"": {"polcy": "read"}}}`, `unknown field "polcy"`},
		{`{"operator": "rwrite"}`, `Invalid operator policy: "rwrite"`},
	} {
		_, _, err := root.PolicyCreate(&consul.ACLPolicy{Name: "bad", Rules: c.rules}, nil)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), c.word) {
			t.Errorf("create with %s: %v", c.rules, err)
		}
		r := do(t, srv, "PUT", "/v1/acl/policy/p-app", `{"Name":"app","Rules":`+mustQuote(c.rules)+`}`, "X-Consul-Token", rootSecret)
		if r.status != 400 || strings.Count(r.body, "\n") != 1 || !strings.Contains(r.body, c.word) {
			t.Errorf("update with %s: %d %q", c.rules, r.status, r.body)
		}
	}
	if store.applied != 0 {
		t.Fatalf("%d refused policies reached the store", store.applied)
	}
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// GET /v1/agent/members: every server of the configuration, in Consul's
// shape, with the leader's view of who is alive; without a leader, what
// this node knows.
func TestAgentMembers(t *testing.T) {
	srv, store := newACLServer(t, true)
	agent := consulClient(t, srv, appSecret).Agent()
	members := func() map[string]*consul.AgentMember {
		t.Helper()
		list, err := agent.Members(false)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*consul.AgentMember{}
		for _, m := range list {
			out[m.Name] = m
		}
		return out
	}
	status := func(m map[string]*consul.AgentMember) string {
		var ids []string
		for id := range m {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var out []string
		for _, id := range ids {
			out = append(out, id+"="+string(rune('0'+m[id].Status)))
		}
		return strings.Join(out, " ")
	}

	m := members()
	n2 := m["n2"]
	if status(m) != "n1=1 n2=1 n3=1" || n2.Addr != "127.0.0.1" || n2.Port != 7002 || !n2.IsConsulServer() ||
		n2.Tags["dc"] != "dc1" || n2.Tags["port"] != "7002" || n2.Tags["id"] != nodeUUID("n2") || n2.ACLMode() != consul.ACLModeEnabled ||
		n2.ProtocolCur != 2 || n2.DelegateCur != 4 {
		t.Fatalf("members: %s %+v", status(m), n2)
	}
	// agent/self's Member is the same description of this node.
	self, err := agent.Self()
	if err != nil || self["Member"]["Name"] != "n1" || self["Member"]["Port"] != float64(7001) || self["Member"]["Status"] != float64(1) {
		t.Fatalf("self: %v %v", self["Member"], err)
	}
	if wan, err := agent.Members(true); err != nil || len(wan) != 3 || wan[0].Name != "n1.dc1" {
		t.Fatalf("WAN members: %+v %v", wan, err)
	}

	store.mu.Lock()
	store.view = map[string]string{"n2": "failed"}
	store.mu.Unlock()
	if got := status(members()); got != "n1=1 n2=4 n3=1" {
		t.Fatalf("n2 failed as the leader sees it: %s", got)
	}
	// No leader: this node vouches only for itself.
	store.mu.Lock()
	store.leader = &[2]string{"", ""}
	store.mu.Unlock()
	if got := status(members()); got != "n1=1 n2=4 n3=4" {
		t.Fatalf("without a leader: %s", got)
	}
	// A leader (n2) that does not answer: this node and the leader it
	// hears from.
	store.mu.Lock()
	store.leader, store.noView = &[2]string{"127.0.0.1:7002", "n2"}, true
	store.mu.Unlock()
	if got := status(members()); got != "n1=1 n2=1 n3=4" {
		t.Fatalf("without the leader's view: %s", got)
	}
	// An unknown token is refused; the list needs no more than a valid one.
	if _, err := consulClient(t, srv, "bogus").Agent().Members(false); err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("members with an unknown token: %v", err)
	}
	if r := do(t, srv, "PUT", "/v1/agent/members", "", "X-Consul-Token", rootSecret); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("PUT members: %d", r.status)
	}
}
