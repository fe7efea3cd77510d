package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// Consul's ACL API: bootstrap, policies and tokens. The records are
// replicated state (raftstore.ApplyACL); reads are linearizable unless
// ?stale, like keys.

// ACLStore holds the ACL records and resolves tokens (see authz.go).
// ResolveToken, ApplyACL and ACLState fail with kv.ErrACLDisabled when
// ACLs are off.
type ACLStore interface {
	ACLsEnabled() bool
	ResolveToken(secret string) (*acl.Identity, error)
	ApplyACL(ctx context.Context, c *acl.Command) (*kv.Result, error)
	ACLState(ctx context.Context, stale bool) (ACLReader, error)
}

// ACLReader reads the replicated policies and tokens (nil, nil: none).
type ACLReader interface {
	ACLIndex() uint64
	ACLBootstrapIndex() (uint64, error)
	ACLPolicy(id string) (*acl.Policy, error)
	ACLPolicyByName(name string) (*acl.Policy, error)
	ACLPolicies() ([]acl.Policy, error)
	ACLToken(accessor string) (*acl.Token, error)
	ACLTokenBySecret(secret string) (*acl.Token, error)
	ACLTokens() ([]acl.Token, error)
}

func (h *handler) aclRoutes(mux *http.ServeMux) {
	route := func(pattern, name string, methods map[string]handlerFunc) {
		mux.Handle(pattern, h.instrument(name, h.authenticated(methodSwitch(methods))))
	}
	// The bootstrap takes no token: there is none yet.
	mux.Handle("/v1/acl/bootstrap", h.instrument("acl_bootstrap", methodSwitch(map[string]handlerFunc{http.MethodPut: h.aclBootstrap})))
	route("/v1/acl/policy", "acl_policy", map[string]handlerFunc{http.MethodPut: need(aclWrite, h.policyCreate)})
	route("/v1/acl/policy/", "acl_policy", map[string]handlerFunc{
		http.MethodGet: need(aclRead, h.policyRead), http.MethodPut: need(aclWrite, h.policyUpdate), http.MethodDelete: need(aclWrite, h.policyDelete),
	})
	route("/v1/acl/policy/name/", "acl_policy", map[string]handlerFunc{http.MethodGet: need(aclRead, h.policyReadByName)})
	route("/v1/acl/policies", "acl_policies", map[string]handlerFunc{http.MethodGet: need(aclRead, h.policyList)})
	route("/v1/acl/token", "acl_token", map[string]handlerFunc{http.MethodPut: need(aclWrite, h.tokenCreate)})
	route("/v1/acl/token/", "acl_token", map[string]handlerFunc{
		http.MethodGet: need(aclRead, h.tokenRead), http.MethodPut: need(aclWrite, h.tokenUpdate), http.MethodDelete: need(aclWrite, h.tokenDelete),
	})
	route("/v1/acl/token/self", "acl_token_self", map[string]handlerFunc{http.MethodGet: h.tokenSelf})
	route("/v1/acl/tokens", "acl_tokens", map[string]handlerFunc{http.MethodGet: need(aclRead, h.tokenList)})
}

// decodeBody reads a JSON body of at most 1 MiB into v; an empty body
// leaves v as it is. Its errors name fields as the JSON does, not by the
// request types' embedded api shapes.
func decodeBody(r *http.Request, what string, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", kv.ErrInvalid, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		unembed(err, v)
		return fmt.Errorf("%w: %s decoding failed: %s", kv.ErrInvalid, what, jsonProblem(err))
	}
	return nil
}

// unembed drops from a decode error's field path the Go names of the
// structs embedded in *v, which encoding/json puts there though they are
// no part of the JSON ("ACLToken.Policies" is the JSON's "Policies").
func unembed(err error, v any) {
	var typ *json.UnmarshalTypeError
	t := reflect.TypeOf(v)
	if !errors.As(err, &typ) || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return
	}
	for i := range t.Elem().NumField() {
		if f := t.Elem().Field(i); f.Anonymous {
			typ.Field = strings.TrimPrefix(typ.Field, f.Name+".")
		}
	}
}

func (h *handler) aclBootstrap(w http.ResponseWriter, r *http.Request) error {
	var req struct{ BootstrapSecret string }
	if err := decodeBody(r, "Bootstrap", &req); err != nil {
		return err
	}
	secret := req.BootstrapSecret
	if secret == "" {
		secret = uuid.NewString()
	} else if err := acl.ValidateID("BootstrapSecret", secret); err != nil {
		return err
	}
	return h.applyToken(w, r, &acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{
		AccessorID: uuid.NewString(), SecretID: secret, Description: "Bootstrap Token (Global Management)"}})
}

// --- policies ---

// policyRequest is the body of a policy create or update: api.ACLPolicy,
// whose indexes the cluster sets (ignored here, whatever their type), and
// Consul's Datacenters (raftkv has one).
type policyRequest struct {
	api.ACLPolicy
	Datacenters              []string
	CreateIndex, ModifyIndex json.RawMessage
}

func (h *handler) policyCreate(w http.ResponseWriter, r *http.Request) error {
	var req policyRequest
	if err := decodeBody(r, "Policy", &req); err != nil {
		return err
	}
	if req.ID != "" {
		return kv.Errorf(kv.ErrInvalid, "Cannot specify the ID when creating a new policy")
	}
	return h.setPolicy(w, r, &acl.Policy{ID: uuid.NewString(), Name: req.Name, Description: req.Description, Rules: req.Rules}, true)
}

func (h *handler) policyUpdate(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, "/v1/acl/policy/")
	var req policyRequest
	if err := decodeBody(r, "Policy", &req); err != nil {
		return err
	}
	if req.ID != "" && req.ID != id {
		return kv.Errorf(kv.ErrInvalid, "Policy ID in URL and payload do not match")
	}
	return h.setPolicy(w, r, &acl.Policy{ID: id, Name: req.Name, Description: req.Description, Rules: req.Rules}, false)
}

func (h *handler) setPolicy(w http.ResponseWriter, r *http.Request, p *acl.Policy, create bool) error {
	if err := acl.ValidatePolicy(p); err != nil {
		return err
	}
	res, err := h.acl.ApplyACL(r.Context(), &acl.Command{Op: acl.OpPolicySet, Create: create, Policy: p})
	if err != nil {
		return err
	}
	var out acl.Policy
	if err := recordOf(res, &out); err != nil {
		return err
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, policyOut(&out))
	return nil
}

func (h *handler) policyDelete(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, "/v1/acl/policy/")
	if id == "" {
		return kv.Errorf(kv.ErrInvalid, "Missing policy ID")
	}
	return h.applyDelete(w, r, &acl.Command{Op: acl.OpPolicyDelete, ID: id})
}

func (h *handler) policyRead(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, "/v1/acl/policy/")
	if id == "" {
		return kv.Errorf(kv.ErrInvalid, "Missing policy ID")
	}
	return h.readPolicy(w, r, func(st ACLReader) (*acl.Policy, error) { return policyByID(st, id) })
}

func (h *handler) policyReadByName(w http.ResponseWriter, r *http.Request) error {
	// Unescaped once more, as Consul does: consul/api escapes the name
	// into a path that is escaped again (a "/" arrives as "%2F").
	name, err := url.PathUnescape(strings.TrimPrefix(r.URL.Path, "/v1/acl/policy/name/"))
	if err != nil {
		return kv.Errorf(kv.ErrInvalid, "Invalid policy name: %v", err)
	}
	if name == "" {
		return kv.Errorf(kv.ErrInvalid, "Missing policy Name")
	}
	return h.readPolicy(w, r, func(st ACLReader) (*acl.Policy, error) {
		p, err := st.ACLPolicyByName(name)
		if b, ok := acl.BuiltinPolicyByName(name); p == nil && err == nil && ok {
			return policyByID(st, b.ID)
		}
		return p, err
	})
}

func (h *handler) readPolicy(w http.ResponseWriter, r *http.Request, find func(ACLReader) (*acl.Policy, error)) error {
	st, err := h.aclState(w, r)
	if err != nil {
		return err
	}
	p, err := find(st)
	if err == nil && p == nil {
		// 404, where a missing token is a 403: consul/api reads a policy
		// by name as "found or not".
		err = kv.Errorf(kv.ErrNotFound, "%s", kv.ErrACLNotFound)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, policyOut(p))
	return nil
}

// policyByID is a stored policy or a built-in one (nil: neither).
func policyByID(st ACLReader, id string) (*acl.Policy, error) {
	p, err := st.ACLPolicy(id)
	if p == nil && err == nil {
		if b, ok := acl.BuiltinPolicy(id); ok {
			p = &b
		}
	}
	return p, err
}

// policyOut is a stored policy as the API shows it.
func policyOut(p *acl.Policy) api.ACLPolicy {
	return api.ACLPolicy{ID: p.ID, Name: p.Name, Description: p.Description, Rules: p.Rules, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex}
}

func (h *handler) policyList(w http.ResponseWriter, r *http.Request) error {
	st, err := h.aclState(w, r)
	if err != nil {
		return err
	}
	all, err := st.ACLPolicies()
	if err != nil {
		return err
	}
	for _, b := range acl.BuiltinPolicies() {
		if p, _ := st.ACLPolicy(b.ID); p == nil {
			all = append(all, b)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	out := make([]api.ACLPolicyListEntry, 0, len(all))
	for _, p := range all {
		out = append(out, api.ACLPolicyListEntry{ID: p.ID, Name: p.Name, Description: p.Description, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// --- tokens ---

// tokenRequest is the body of a token create or update: api.ACLToken,
// whose time and indexes the cluster sets (ignored here, whatever their
// type), and what Consul's tokens have and raftkv's do not (refused, see
// unsupported).
type tokenRequest struct {
	api.ACLToken
	CreateTime, CreateIndex, ModifyIndex json.RawMessage
	Roles                                []json.RawMessage
	ServiceIdentities                    []json.RawMessage
	NodeIdentities                       []json.RawMessage
	ExpirationTTL                        json.RawMessage
	ExpirationTime                       json.RawMessage
}

// unsupported refuses what raftkv's tokens do not have, rather than
// ignoring it (a token meant to expire must not live for ever).
func (t *tokenRequest) unsupported() error {
	switch {
	case len(t.Roles) > 0:
		return kv.Errorf(kv.ErrInvalid, "Invalid Token: roles are not supported")
	case len(t.ServiceIdentities) > 0 || len(t.NodeIdentities) > 0:
		return kv.Errorf(kv.ErrInvalid, "Invalid Token: service and node identities are not supported")
	case len(t.ExpirationTTL) > 0 && string(t.ExpirationTTL) != "0" && string(t.ExpirationTTL) != `""` && string(t.ExpirationTTL) != "null",
		len(t.ExpirationTime) > 0 && string(t.ExpirationTime) != "null":
		return kv.Errorf(kv.ErrInvalid, "Invalid Token: expiring tokens are not supported")
	}
	return nil
}

// links are a request's policy links as the store takes them.
func (t *tokenRequest) links() []acl.PolicyLink {
	if t.Policies == nil {
		return nil
	}
	out := make([]acl.PolicyLink, len(t.Policies))
	for i, l := range t.Policies {
		out[i] = acl.PolicyLink{ID: l.ID, Name: l.Name}
	}
	return out
}

func (h *handler) tokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if err := decodeBody(r, "Token", &req); err != nil {
		return err
	}
	if err := req.unsupported(); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"AccessorID", req.AccessorID}, {"SecretID", req.SecretID}} {
		if f.v == "" {
			continue
		}
		if err := acl.ValidateID(f.name, f.v); err != nil {
			return err
		}
		if strings.HasPrefix(f.v, "00000000-0000-0000-0000-0000000000") {
			return kv.Errorf(kv.ErrInvalid, "Invalid Token: %s %q is reserved", f.name, f.v)
		}
	}
	t := &acl.Token{AccessorID: req.AccessorID, SecretID: req.SecretID, Description: req.Description, Policies: req.links(), Local: req.Local}
	if t.AccessorID == "" {
		t.AccessorID = uuid.NewString()
	}
	if t.SecretID == "" {
		t.SecretID = uuid.NewString()
	}
	return h.applyToken(w, r, &acl.Command{Op: acl.OpTokenSet, Create: true, Token: t})
}

// tokenPath splits /v1/acl/token/<accessor>[/clone].
func tokenPath(r *http.Request) (accessor string, clone bool) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/acl/token/")
	if a, ok := strings.CutSuffix(rest, "/clone"); ok {
		return a, true
	}
	return rest, false
}

func (h *handler) tokenUpdate(w http.ResponseWriter, r *http.Request) error {
	accessor, clone := tokenPath(r)
	if clone {
		return h.tokenClone(w, r, accessor)
	}
	var req tokenRequest
	if err := decodeBody(r, "Token", &req); err != nil {
		return err
	}
	if req.AccessorID != "" && req.AccessorID != accessor {
		return kv.Errorf(kv.ErrInvalid, "Token Accessor ID in URL and payload do not match")
	}
	if err := req.unsupported(); err != nil {
		return err
	}
	return h.applyToken(w, r, &acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{
		AccessorID: accessor, SecretID: req.SecretID, Description: req.Description, Policies: req.links(), Local: req.Local}})
}

func (h *handler) tokenClone(w http.ResponseWriter, r *http.Request, accessor string) error {
	var req struct{ Description string }
	if err := decodeBody(r, "Token", &req); err != nil {
		return err
	}
	st, err := h.aclState(w, r)
	if err != nil {
		return err
	}
	src, err := st.ACLToken(accessor)
	if err == nil && src == nil {
		err = kv.ErrACLNotFound
	}
	if err != nil {
		return err
	}
	t := &acl.Token{AccessorID: uuid.NewString(), SecretID: uuid.NewString(), Description: src.Description, Policies: src.Policies, Local: src.Local}
	if req.Description != "" {
		t.Description = req.Description
	}
	return h.applyToken(w, r, &acl.Command{Op: acl.OpTokenSet, Create: true, Token: t})
}

func (h *handler) tokenDelete(w http.ResponseWriter, r *http.Request) error {
	accessor, _ := tokenPath(r)
	if accessor == "" {
		return kv.Errorf(kv.ErrInvalid, "Missing token ID")
	}
	return h.applyDelete(w, r, &acl.Command{Op: acl.OpTokenDelete, ID: accessor})
}

func (h *handler) tokenRead(w http.ResponseWriter, r *http.Request) error {
	accessor, _ := tokenPath(r)
	if accessor == "" {
		return kv.Errorf(kv.ErrInvalid, "Missing token ID")
	}
	st, err := h.aclState(w, r)
	if err != nil {
		return err
	}
	t, err := tokenByAccessor(st, accessor)
	if err == nil && t == nil {
		err = kv.ErrACLNotFound
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, shown(st, t, !identity(r).ACLWrite()))
	return nil
}

func (h *handler) tokenSelf(w http.ResponseWriter, r *http.Request) error {
	st, err := h.aclState(w, r)
	if err != nil {
		return err
	}
	t, err := tokenByAccessor(st, identity(r).AccessorID)
	if err == nil && t == nil {
		err = kv.ErrACLNotFound
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, shown(st, t, false))
	return nil
}

func (h *handler) tokenList(w http.ResponseWriter, r *http.Request) error {
	st, err := h.aclState(w, r)
	if err != nil {
		return err
	}
	all, err := st.ACLTokens()
	if err != nil {
		return err
	}
	if t, _ := st.ACLToken(acl.AnonymousAccessorID); t == nil {
		b, _ := acl.BuiltinToken(acl.AnonymousAccessorID)
		all = append(all, b)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].AccessorID < all[j].AccessorID })
	redact := !identity(r).ACLWrite()
	out := make([]api.ACLToken, 0, len(all))
	for i := range all {
		out = append(out, shown(st, &all[i], redact))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// tokenByAccessor is a stored token or a built-in one (nil: neither).
func tokenByAccessor(st ACLReader, accessor string) (*acl.Token, error) {
	t, err := st.ACLToken(accessor)
	if t == nil && err == nil {
		if b, ok := acl.BuiltinToken(accessor); ok {
			t = &b
		}
	}
	return t, err
}

// shown is t as a client sees it: its policies named (those deleted since
// left out), its secret hidden from those who may not write ACLs.
func shown(st ACLReader, t *acl.Token, redact bool) api.ACLToken {
	out := api.ACLToken{AccessorID: t.AccessorID, SecretID: t.SecretID, Description: t.Description, Local: t.Local,
		CreateTime: t.CreateTime, CreateIndex: t.CreateIndex, ModifyIndex: t.ModifyIndex}
	out.Policies = make([]api.ACLLink, 0, len(t.Policies))
	for _, l := range t.Policies {
		if p, err := policyByID(st, l.ID); err == nil && p != nil {
			out.Policies = append(out.Policies, api.ACLLink{ID: p.ID, Name: p.Name})
		}
	}
	if redact {
		out.SecretID = "<hidden>"
	}
	return out
}

// applyToken proposes c and answers with the token it stored (plus
// Consul's legacy "ID", the secret, for a bootstrap).
func (h *handler) applyToken(w http.ResponseWriter, r *http.Request, c *acl.Command) error {
	res, err := h.acl.ApplyACL(r.Context(), c)
	if err != nil {
		return err
	}
	var t acl.Token
	if err := recordOf(res, &t); err != nil {
		return err
	}
	// This node has applied the change (ApplyACL waits for it): a local
	// read names the token's policies.
	st, err := h.acl.ACLState(r.Context(), true)
	if err != nil {
		return err
	}
	out := shown(st, &t, false)
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	if c.Op == acl.OpBootstrap {
		writeJSON(w, http.StatusOK, struct {
			ID string
			*api.ACLToken
		}{out.SecretID, &out})
		return nil
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) applyDelete(w http.ResponseWriter, r *http.Request, c *acl.Command) error {
	res, err := h.acl.ApplyACL(r.Context(), c)
	if err != nil {
		return err
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, true)
	return nil
}

// aclState is the ACL state to read, linearizable unless ?stale, and sets
// the query meta every read carries (as a KV read's: consul/api reports
// KnownLeader and LastIndex from them).
func (h *handler) aclState(w http.ResponseWriter, r *http.Request) (ACLReader, error) {
	stale := has(r.URL.Query(), "stale")
	st, err := h.acl.ACLState(r.Context(), stale)
	if err != nil {
		return nil, err
	}
	leader, _ := h.node.Leader()
	setQueryMeta(w, st.ACLIndex(), leader != "", h.node.LastContact(), stale)
	return st, nil
}

// recordOf decodes the record an ACL command answered with.
func recordOf(res *kv.Result, v any) error {
	if len(res.Entries) == 0 {
		return fmt.Errorf("ACL change at %d answered without its record", res.Index)
	}
	if err := json.Unmarshal(res.Entries[0].Value, v); err != nil {
		return fmt.Errorf("ACL change at %d: %w", res.Index, err)
	}
	return nil
}
