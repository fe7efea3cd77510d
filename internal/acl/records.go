package acl

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The built-ins every cluster has, with Consul's reserved IDs and names:
// the global-management policy (everything allowed), the global-read-only
// policy (every read but of secrets), and the anonymous token, which
// requests without a token use. They exist without being stored; storing
// one (a changed name or description, policies given to the anonymous
// token) overrides the built-in. A built-in policy cannot be deleted nor
// have its rules changed (fsm).
const (
	GlobalManagementID   = "00000000-0000-0000-0000-000000000001"
	GlobalManagementName = "global-management"
	AnonymousAccessorID  = "00000000-0000-0000-0000-000000000002"
	AnonymousSecretID    = "anonymous"
	// ManagementRules is how the global-management policy reads; the
	// resolver grants it everything whatever its text.
	ManagementRules = "acl = \"write\"\noperator = \"write\"\nkey_prefix \"\" {\n  policy = \"write\"\n}\nsession_prefix \"\" {\n  policy = \"write\"\n}\n"

	// GlobalReadOnlyID and GlobalReadOnlyName are Consul's (since 1.16):
	// the name has Consul's reserved "builtin/" prefix. By name it is also
	// found as plain "global-read-only" (GlobalReadOnlyAlias), unless a
	// stored policy has that name.
	GlobalReadOnlyID    = "00000000-0000-0000-0000-000000000002"
	GlobalReadOnlyName  = "builtin/global-read-only"
	GlobalReadOnlyAlias = "global-read-only"
	// GlobalReadOnlyRules are Consul's text: read on everything, acl
	// included, which shows policies and tokens but not their secrets (those
	// need acl write).
	GlobalReadOnlyRules = `
acl = "read"
agent_prefix "" {
	policy = "read"
}
event_prefix "" {
	policy = "read"
}
key_prefix "" {
	policy = "read"
}
keyring = "read"
node_prefix "" {
	policy = "read"
}
operator = "read"
mesh = "read"
peering = "read"
query_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
	intentions = "read"
}
session_prefix "" {
	policy = "read"
}`

	// reservedPolicyPrefix starts the names of Consul's built-in policies:
	// no other policy may take one.
	reservedPolicyPrefix = "builtin/"
)

var builtinPolicies = []Policy{
	{ID: GlobalManagementID, Name: GlobalManagementName,
		Description: "Builtin Policy that grants unlimited access", Rules: ManagementRules},
	{ID: GlobalReadOnlyID, Name: GlobalReadOnlyName,
		Description: "Builtin Policy that grants unlimited read-only access to all components", Rules: GlobalReadOnlyRules},
}

// Policy is a stored policy, in Consul's JSON shape.
type Policy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	CreateIndex uint64
	ModifyIndex uint64
}

// PolicyLink names a token's policy. Tokens are stored with IDs only; the
// name is filled in when the token is read, so a renamed policy shows its
// new name and a deleted one disappears from its tokens.
type PolicyLink struct {
	ID   string
	Name string
}

// Token is a stored token, in Consul's JSON shape.
type Token struct {
	AccessorID  string
	SecretID    string
	Description string
	Policies    []PolicyLink
	Local       bool
	CreateTime  time.Time
	CreateIndex uint64
	ModifyIndex uint64
}

// BuiltinPolicies are the built-in policies, by ID.
func BuiltinPolicies() []Policy { return append([]Policy(nil), builtinPolicies...) }

// BuiltinPolicy is the built-in policy with id, if there is one.
func BuiltinPolicy(id string) (Policy, bool) {
	for _, p := range builtinPolicies {
		if p.ID == id {
			return p, true
		}
	}
	return Policy{}, false
}

// BuiltinPolicyByName is the built-in policy called name (its own name, or
// GlobalReadOnlyAlias), if there is one. A stored policy of that name, if
// any, comes first: callers look this up only when none is stored.
func BuiltinPolicyByName(name string) (Policy, bool) {
	if name == GlobalReadOnlyAlias {
		name = GlobalReadOnlyName
	}
	for _, p := range builtinPolicies {
		if p.Name == name {
			return p, true
		}
	}
	return Policy{}, false
}

// BuiltinToken is the built-in token with accessor, if there is one.
func BuiltinToken(accessor string) (Token, bool) {
	if accessor != AnonymousAccessorID {
		return Token{}, false
	}
	return Token{AccessorID: AnonymousAccessorID, SecretID: AnonymousSecretID,
		Description: "Anonymous Token", Policies: []PolicyLink{}}, true
}

// Op is the kind of a replicated ACL change.
type Op string

const (
	// OpBootstrap creates the first management token, once per cluster.
	OpBootstrap Op = "bootstrap"
	// OpInitialManagement makes sure a management token with Token's
	// secret exists (-acl-initial-management) and closes bootstrap.
	OpInitialManagement Op = "initial-management"
	OpPolicySet         Op = "policy-set"
	OpPolicyDelete      Op = "policy-delete"
	OpTokenSet          Op = "token-set"
	OpTokenDelete       Op = "token-delete"
	// OpPeerSecret records the credential nodes present to each other's
	// node-to-node endpoints when there is no TLS to tell them apart.
	OpPeerSecret Op = "peer-secret"
)

// Command is one replicated ACL change. IDs and secrets are chosen before
// it is proposed, so applying it is deterministic.
type Command struct {
	Op     Op
	Create bool    `json:",omitempty"` // a set that must not replace anything
	Policy *Policy `json:",omitempty"`
	Token  *Token  `json:",omitempty"`
	ID     string  `json:",omitempty"` // what a delete removes; the peer secret
}

var (
	// policyName is Consul's (1.16+): letters, digits, '-' and '_', with
	// at most one '/' inside, up to 128 characters.
	policyName = regexp.MustCompile(`^[A-Za-z0-9\-_]+/?[A-Za-z0-9\-_]*$`)
	uuidForm   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// ValidatePolicy checks what can be checked without the stored state:
// Consul's name rule (a built-in keeps its own name) and rules that
// parse (Parse). A refusal of the rules is Parse's text as it is:
// "Failed to parse ACL rules: unknown block \"key_prefx\"".
func ValidatePolicy(p *Policy) error {
	b, builtin := BuiltinPolicy(p.ID)
	if !(builtin && p.Name == b.Name) &&
		(len(p.Name) > 128 || !policyName.MatchString(p.Name) || strings.HasPrefix(p.Name, reservedPolicyPrefix)) {
		return fmt.Errorf("%w: Invalid Policy: invalid Name. Only alphanumeric characters, '-', '_' and one '/' are allowed, and %q is reserved", kv.ErrInvalid, reservedPolicyPrefix)
	}
	if _, err := Parse(p.Rules); err != nil {
		return &kv.Error{Sentinel: kv.ErrInvalid, Msg: err.Error()}
	}
	return nil
}

// ValidateID accepts Consul's ID form: a UUID. what names the field.
func ValidateID(what, id string) error {
	if !uuidForm.MatchString(id) {
		return fmt.Errorf("%w: Invalid %s: %q is not a UUID", kv.ErrInvalid, what, id)
	}
	return nil
}
