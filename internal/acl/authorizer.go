package acl

import (
	"strings"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// Authorizer answers for one token: the merge of its policies, over the
// cluster's default policy.
type Authorizer struct {
	management bool
	def        Access // Write when the default policy is allow, Deny when deny
	keys       map[string]Access
	keyPrefix  *iradix.Tree // prefix → Access
	sessions   map[string]Access
	sessPrefix *iradix.Tree
	operator   Access
	acl        Access
}

// Management is the authorizer of a management token: everything allowed.
func Management() *Authorizer { return &Authorizer{management: true} }

// New builds the authorizer of a token with policies, under the default
// policy (allowAll: "allow"; otherwise "deny").
func New(allowAll bool, policies ...*Rules) *Authorizer {
	a := &Authorizer{def: Deny, keys: map[string]Access{}, sessions: map[string]Access{}}
	if allowAll {
		a.def = Write
	}
	keyPrefix, sessPrefix := iradix.New().Txn(), iradix.New().Txn()
	for _, p := range policies {
		for k, v := range p.Keys {
			a.keys[k] = merge(a.keys[k], v)
		}
		for k, v := range p.Sessions {
			a.sessions[k] = merge(a.sessions[k], v)
		}
		for _, m := range []struct {
			from map[string]Access
			to   *iradix.Txn
		}{{p.KeyPrefixes, keyPrefix}, {p.SessionPrefixes, sessPrefix}} {
			for k, v := range m.from {
				old, _ := m.to.Get([]byte(k))
				prev, _ := old.(Access)
				m.to.Insert([]byte(k), merge(prev, v))
			}
		}
		a.operator = merge(a.operator, p.Operator)
		a.acl = merge(a.acl, p.ACL)
	}
	a.keyPrefix, a.sessPrefix = keyPrefix.Commit(), sessPrefix.Commit()
	return a
}

// lookup is the access to name: its exact rule, else the longest prefix
// rule, else the default.
func (a *Authorizer) lookup(exact map[string]Access, prefixes *iradix.Tree, name string) Access {
	if v, ok := exact[name]; ok && v != Unset {
		return v
	}
	if _, v, ok := prefixes.Root().LongestPrefix([]byte(name)); ok {
		if acc := v.(Access); acc != Unset {
			return acc
		}
	}
	return a.def
}

func allows(have, want Access) bool { return have != Deny && have >= want }

func (a *Authorizer) top(v, want Access) bool {
	if a.management {
		return true
	}
	if v == Unset {
		v = a.def
	}
	return allows(v, want)
}

// KeyRead: may the token read key's value?
func (a *Authorizer) KeyRead(key string) bool {
	return a.management || allows(a.lookup(a.keys, a.keyPrefix, key), Read)
}

// KeyList: may the token see key in a listing of names?
func (a *Authorizer) KeyList(key string) bool {
	return a.management || allows(a.lookup(a.keys, a.keyPrefix, key), List)
}

// KeyWrite: may the token write (or delete) key?
func (a *Authorizer) KeyWrite(key string) bool {
	return a.management || allows(a.lookup(a.keys, a.keyPrefix, key), Write)
}

// KeyWritePrefix: may the token write every key under prefix (a recursive
// delete)? The prefix itself must be writable, and no rule for a key or
// prefix under it may say otherwise.
func (a *Authorizer) KeyWritePrefix(prefix string) bool {
	if a.management {
		return true
	}
	if !allows(a.lookup(a.keys, a.keyPrefix, prefix), Write) {
		return false
	}
	for k, v := range a.keys {
		if strings.HasPrefix(k, prefix) && !allows(v, Write) {
			return false
		}
	}
	ok := true
	a.keyPrefix.Root().WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		if acc := v.(Access); acc != Unset && !allows(acc, Write) {
			ok = false
			return true
		}
		return false
	})
	return ok
}

// SessionRead and SessionWrite: sessions of node (session and
// session_prefix rules).
func (a *Authorizer) SessionRead(node string) bool {
	return a.management || allows(a.lookup(a.sessions, a.sessPrefix, node), Read)
}

func (a *Authorizer) SessionWrite(node string) bool {
	return a.management || allows(a.lookup(a.sessions, a.sessPrefix, node), Write)
}

// OperatorRead, OperatorWrite: the cluster (membership, raft, autopilot).
func (a *Authorizer) OperatorRead() bool  { return a.top(a.operator, Read) }
func (a *Authorizer) OperatorWrite() bool { return a.top(a.operator, Write) }

// ACLRead, ACLWrite: policies and tokens, and snapshots (which hold them).
func (a *Authorizer) ACLRead() bool  { return a.top(a.acl, Read) }
func (a *Authorizer) ACLWrite() bool { return a.top(a.acl, Write) }
