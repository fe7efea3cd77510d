package acl

import (
	"fmt"
	"sync"

	"github.com/raftkv/raftkv/kv"
)

// Source is the replicated ACL state a Resolver reads (the FSM).
type Source interface {
	// ACLIndex rises with every change to policies or tokens.
	ACLIndex() uint64
	// ACLTokenBySecret and ACLPolicy return nil, nil for what does not
	// exist; built-ins are the Resolver's business.
	ACLTokenBySecret(secret string) (*Token, error)
	ACLPolicy(id string) (*Policy, error)
}

// Identity is a resolved token: who it is (for denials and logs) and what
// it may do.
type Identity struct {
	AccessorID string
	*Authorizer
}

// Denied is the error for a request id may not make, in Consul's words.
// name is the resource's name ("" for operator and acl).
func (id *Identity) Denied(resource string, access Access, name string) error {
	msg := fmt.Sprintf("Permission denied: token with AccessorID '%s' lacks permission '%s:%s'", id.AccessorID, resource, access)
	if name != "" {
		msg += fmt.Sprintf(" on %q", name)
	}
	return kv.Errorf(kv.ErrPermissionDenied, "%s", msg)
}

// maxCached bounds the resolver's cache; it is cleared when full.
const maxCached = 4096

// Resolver turns secrets into Identities from a Source, caching them
// until the ACL state changes.
type Resolver struct {
	src      Source
	allowAll bool

	mu    sync.Mutex
	index uint64
	cache map[string]*Identity
}

// NewResolver resolves from src under the default policy ("allow":
// allowAll).
func NewResolver(src Source, allowAll bool) *Resolver {
	return &Resolver{src: src, allowAll: allowAll, cache: map[string]*Identity{}}
}

// Resolve returns the identity of secret ("" is the anonymous token), or an
// error wrapping kv.ErrACLNotFound for a secret no token has.
func (r *Resolver) Resolve(secret string) (*Identity, error) {
	if secret == "" {
		secret = AnonymousSecretID
	}
	index := r.src.ACLIndex()
	r.mu.Lock()
	if r.index != index || len(r.cache) >= maxCached {
		r.index, r.cache = index, map[string]*Identity{}
	}
	id, ok := r.cache[secret]
	r.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := r.build(secret)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.index == index {
		r.cache[secret] = id
	}
	r.mu.Unlock()
	return id, nil
}

func (r *Resolver) build(secret string) (*Identity, error) {
	tok, err := r.src.ACLTokenBySecret(secret)
	if err != nil {
		return nil, fmt.Errorf("resolve token: %w", err)
	}
	if tok == nil && secret == AnonymousSecretID {
		t, _ := BuiltinToken(AnonymousAccessorID)
		tok = &t
	}
	if tok == nil {
		return nil, kv.ErrACLNotFound
	}
	var rules []*Rules
	for _, link := range tok.Policies {
		if link.ID == GlobalManagementID {
			return &Identity{AccessorID: tok.AccessorID, Authorizer: Management()}, nil
		}
		p, err := r.src.ACLPolicy(link.ID)
		if err != nil {
			return nil, fmt.Errorf("resolve policy %s: %w", link.ID, err)
		}
		if p == nil {
			continue // deleted since: it grants nothing
		}
		parsed, err := Parse(p.Rules)
		if err != nil {
			continue // stored rules were checked on the way in; never guess
		}
		rules = append(rules, parsed)
	}
	return &Identity{AccessorID: tok.AccessorID, Authorizer: New(r.allowAll, rules...)}, nil
}
