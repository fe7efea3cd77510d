package httpd

import (
	"context"
	"net/http"
	"strings"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// Authorisation. Every route but the open ones (/healthz, /readyz,
// /metrics, /v1/status/*, the bootstrap) resolves the request's token
// before its handler runs; the handler then asks the identity about the
// resources the request touches (which keys, which node's sessions), and
// listings leave out what it may not see. With ACLs off the identity is
// allowAll, so handlers never branch on whether ACLs are on.

// allowAll is the identity of every request when ACLs are off.
var allowAll = &acl.Identity{Authorizer: acl.Management()}

// filteredHeader tells a client that a listing left entries out.
const filteredHeader = "X-Consul-Results-Filtered-By-ACLs"

type identityKey struct{}

// tokenOf is the request's secret, where Consul looks for it and in
// Consul's order: ?token=, X-Consul-Token, then Authorization: Bearer.
func tokenOf(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	scheme, value, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "bearer") && !strings.Contains(value, " ") {
		return strings.TrimSpace(value)
	}
	return ""
}

// authenticated resolves the request's token for next; an unknown token
// is refused here (403 "ACL not found").
func (h *handler) authenticated(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := allowAll
		if h.acl.ACLsEnabled() {
			var err error
			if id, err = h.acl.ResolveToken(tokenOf(r)); err != nil {
				return err
			}
		}
		return next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// identity is the request's resolved token (allowAll outside authenticated
// routes, which only tests reach).
func identity(r *http.Request) *acl.Identity {
	if id, ok := r.Context().Value(identityKey{}).(*acl.Identity); ok {
		return id
	}
	return allowAll
}

// need wraps a route that takes one cluster-wide permission.
func need(check func(*acl.Identity) error, next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := check(identity(r)); err != nil {
			return err
		}
		return next(w, r)
	}
}

// requires is the check of one cluster-wide permission: allowed says
// whether id has it, resource:access names it in the refusal.
func requires(resource string, access acl.Access, allowed func(*acl.Identity) bool) func(*acl.Identity) error {
	return func(id *acl.Identity) error {
		if !allowed(id) {
			return id.Denied(resource, access, "")
		}
		return nil
	}
}

var (
	operatorRead  = requires("operator", acl.Read, (*acl.Identity).OperatorRead)
	operatorWrite = requires("operator", acl.Write, (*acl.Identity).OperatorWrite)
	aclRead       = requires("acl", acl.Read, (*acl.Identity).ACLRead)
	aclWrite      = requires("acl", acl.Write, (*acl.Identity).ACLWrite)
)

// checkOps is the permission check of a write or transaction, op by op:
// reads and checks need read, a recursive delete needs write on its whole
// prefix, every other write needs write on its key.
func checkOps(id *acl.Identity, ops []kv.Op) error {
	for _, op := range ops {
		switch op.Verb {
		case kv.VerbGetTree:
			// Filtered on the way out, as a listing is.
		case kv.VerbGet, kv.VerbGetOrEmpty, kv.VerbCheckIndex, kv.VerbCheckNotExists, kv.VerbCheckSession:
			if !id.KeyRead(op.Key) {
				return id.Denied("key", acl.Read, op.Key)
			}
		case kv.VerbDeleteTree:
			if !id.KeyWritePrefix(op.Key) {
				return id.Denied("key", acl.Write, op.Key)
			}
		default:
			if !id.KeyWrite(op.Key) {
				return id.Denied("key", acl.Write, op.Key)
			}
		}
	}
	return nil
}

// visible keeps the items allowed says id may see; filtered reports that
// some were left out (listings, blocking queries, transactions' get-tree).
func visible[T any](items []T, allowed func(T) bool) (kept []T, filtered bool) {
	kept = items[:0:0]
	for _, it := range items {
		if allowed(it) {
			kept = append(kept, it)
		} else {
			filtered = true
		}
	}
	return kept, filtered
}

func readable(id *acl.Identity, entries []kv.Entry) ([]kv.Entry, bool) {
	return visible(entries, func(e kv.Entry) bool { return id.KeyRead(e.Key) })
}

func markFiltered(w http.ResponseWriter, filtered bool) {
	if filtered {
		w.Header().Set(filteredHeader, "true")
	}
}
