// Package acl is raftkv's authorisation: Consul's rule language (HCL, or
// the same as JSON) parsed into policies, and an Authorizer that answers
// "may this token do that to this resource" for the resources raftkv has
// (keys, sessions, operator, acl). It knows nothing of HTTP or raft: the
// API layer asks it, the FSM stores the policies and tokens it is built
// from.
//
// Files: rules.go (the language), authorizer.go (answers for one token),
// records.go (the stored Policy and Token, the built-ins, the replicated
// Command), resolver.go (secret → Identity, cached per ACL index).
//
// The rules are Consul's: an exact key rule beats any prefix rule, the
// longest matching prefix wins, no matching rule falls back to the default
// policy; where several policies of a token speak of the same resource,
// deny wins, then the most permissive (write, list, read).
package acl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl"
)

// ErrBadRules marks rules that do not parse; the API answers 400.
var ErrBadRules = errors.New("invalid ACL rules")

// Access is what a rule grants.
type Access int

const (
	// Unset: the policy says nothing of the resource.
	Unset Access = iota
	Deny
	// List: see key names in listings, not values (Consul's "list").
	List
	Read
	Write
)

func (a Access) String() string {
	return [...]string{"unset", "deny", "list", "read", "write"}[a]
}

// ParseAccess reads a rule's policy value.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "deny":
		return Deny, nil
	case "list":
		return List, nil
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	}
	return Unset, fmt.Errorf("%w: invalid policy %q (want read, write, list or deny)", ErrBadRules, s)
}

// merge combines two policies' access to one resource: deny wins, then
// the most permissive.
func merge(a, b Access) Access {
	switch {
	case a == Deny || b == Deny:
		return Deny
	case a > b:
		return a
	}
	return b
}

// Rules are one policy's parsed rules.
type Rules struct {
	Keys            map[string]Access // exact key rules
	KeyPrefixes     map[string]Access
	Sessions        map[string]Access // by node name
	SessionPrefixes map[string]Access
	Operator        Access
	ACL             Access
}

// rulesFile is the shape of Consul's rules that raftkv understands. Rules
// for resources raftkv does not have (service, node, agent, event, query,
// keyring, mesh…) are accepted and ignored, so that Consul's policies load.
type rulesFile struct {
	Key           map[string]ruleBody `hcl:"key"`
	KeyPrefix     map[string]ruleBody `hcl:"key_prefix"`
	Session       map[string]ruleBody `hcl:"session"`
	SessionPrefix map[string]ruleBody `hcl:"session_prefix"`
	Operator      string              `hcl:"operator"`
	ACL           string              `hcl:"acl"`
}

type ruleBody struct {
	Policy string `hcl:"policy"`
}

// Parse reads rules in Consul's HCL or JSON form. Anything that does not
// parse, or a policy value that is not read, write, list or deny, is an
// error wrapping ErrBadRules: a rule is never guessed at.
func Parse(rules string) (*Rules, error) {
	p := &Rules{Keys: map[string]Access{}, KeyPrefixes: map[string]Access{},
		Sessions: map[string]Access{}, SessionPrefixes: map[string]Access{}}
	if strings.TrimSpace(rules) == "" {
		return p, nil
	}
	f, err := decode(rules)
	if err != nil {
		return nil, err
	}
	for _, set := range []struct {
		from map[string]ruleBody
		to   map[string]Access
	}{{f.Key, p.Keys}, {f.KeyPrefix, p.KeyPrefixes}, {f.Session, p.Sessions}, {f.SessionPrefix, p.SessionPrefixes}} {
		for name, body := range set.from {
			a, err := ParseAccess(body.Policy)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", name, err)
			}
			set.to[name] = a
		}
	}
	if p.Operator, err = parseTop("operator", f.Operator); err != nil {
		return nil, err
	}
	if p.ACL, err = parseTop("acl", f.ACL); err != nil {
		return nil, err
	}
	return p, nil
}

// decode runs the HCL decoder, which panics on some malformed input (its
// JSON scanner, on a truncated escape: found by FuzzParse): a panic is a
// parse error like any other.
func decode(rules string) (f rulesFile, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBadRules, p)
		}
	}()
	if err := hcl.Decode(&f, rules); err != nil {
		return f, fmt.Errorf("%w: %v", ErrBadRules, err)
	}
	return f, nil
}

// parseTop reads operator and acl, which take read, write or deny.
func parseTop(name, v string) (Access, error) {
	if v == "" {
		return Unset, nil
	}
	a, err := ParseAccess(v)
	if err != nil || a == List {
		return Unset, fmt.Errorf("%w: %s = %q (want read, write or deny)", ErrBadRules, name, v)
	}
	return a, nil
}
