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
func (h *handler) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := allowAll
		if h.store.ACLsEnabled() {
			var err error
			if id, err = h.store.ResolveToken(tokenOf(r)); err != nil {
				writeError(w, err)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
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
func need(check func(*acl.Identity) error, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := check(identity(r)); err != nil {
			writeError(w, err)
			return
		}
		next(w, r)
	}
}

func operatorRead(id *acl.Identity) error {
	if !id.OperatorRead() {
		return id.Denied("operator", acl.Read, "")
	}
	return nil
}

func operatorWrite(id *acl.Identity) error {
	if !id.OperatorWrite() {
		return id.Denied("operator", acl.Write, "")
	}
	return nil
}

func aclRead(id *acl.Identity) error {
	if !id.ACLRead() {
		return id.Denied("acl", acl.Read, "")
	}
	return nil
}

func aclWrite(id *acl.Identity) error {
	if !id.ACLWrite() {
		return id.Denied("acl", acl.Write, "")
	}
	return nil
}

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

// readable keeps the entries id may read; filtered reports a removal.
func readable(id *acl.Identity, entries []kv.Entry) (kept []kv.Entry, filtered bool) {
	kept = entries[:0:0]
	for _, e := range entries {
		if id.KeyRead(e.Key) {
			kept = append(kept, e)
		} else {
			filtered = true
		}
	}
	return kept, filtered
}

// listable keeps the key names id may list.
func listable(id *acl.Identity, keys []string) (kept []string, filtered bool) {
	kept = keys[:0:0]
	for _, k := range keys {
		if id.KeyList(k) {
			kept = append(kept, k)
		} else {
			filtered = true
		}
	}
	return kept, filtered
}

func markFiltered(w http.ResponseWriter, filtered bool) {
	if filtered {
		w.Header().Set(filteredHeader, "true")
	}
}
