package acl

import (
	"fmt"
	"strings"
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

// BootstrapSource is a Source that knows whether the ACL system was
// bootstrapped (the FSM): a secret no token has is then refused in
// Consul's words for a cluster that was not.
type BootstrapSource interface {
	Source
	// ACLBootstrapIndex is the index of the bootstrap, 0 before it.
	ACLBootstrapIndex() (uint64, error)
}

// ErrNotBootstrapped is Consul's refusal of a token before the bootstrap
// (which is the only way a token can exist): it wraps kv.ErrACLNotFound.
var ErrNotBootstrapped = &kv.Error{Sentinel: kv.ErrACLNotFound,
	Msg: "ACL system must be bootstrapped before making any requests that require authorization: " + kv.ErrACLNotFound.Error()}

// Identity is a resolved token: who it is (for denials and logs) and what
// it may do.
type Identity struct {
	AccessorID string
	*Authorizer
}

// Denied is the error for a request id may not make, in Consul's words
// (its acl.PermissionDeniedError): name is the resource's name ("" for
// operator and acl), quoted as Consul does, without escaping; the
// anonymous token is named as such, with Consul's hint.
func (id *Identity) Denied(resource string, access Access, name string) error {
	var msg strings.Builder
	msg.WriteString("Permission denied: ")
	if id.AccessorID == AnonymousAccessorID {
		msg.WriteString("anonymous token")
	} else {
		fmt.Fprintf(&msg, "token with AccessorID '%s'", id.AccessorID)
	}
	fmt.Fprintf(&msg, " lacks permission '%s:%s'", resource, access)
	if name != "" {
		msg.WriteString(` on "` + name + `"`)
	}
	if id.AccessorID == AnonymousAccessorID {
		msg.WriteString(". The anonymous token is used implicitly when a request does not specify a token.")
	}
	return kv.Errorf(kv.ErrPermissionDenied, "%s", msg.String())
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
		return nil, r.notFound()
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
		if b, ok := BuiltinPolicy(link.ID); ok && p == nil {
			p = &b
		}
		if p == nil {
			continue // deleted since: it grants nothing
		}
		parsed, err := parseStored(p.Rules)
		if err != nil {
			continue // stored rules were checked on the way in; never guess
		}
		rules = append(rules, parsed)
	}
	return &Identity{AccessorID: tok.AccessorID, Authorizer: New(r.allowAll, rules...)}, nil
}

// notFound is the refusal of a secret no token has: Consul's "ACL not
// found", with its hint when the cluster was never bootstrapped.
func (r *Resolver) notFound() error {
	if b, ok := r.src.(BootstrapSource); ok {
		if idx, err := b.ACLBootstrapIndex(); err == nil && idx == 0 {
			return ErrNotBootstrapped
		}
	}
	return kv.ErrACLNotFound
}
