package acl

import (
	"fmt"
	"regexp"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The built-ins every cluster has, with Consul's reserved IDs: the
// global-management policy (everything allowed) and the anonymous token,
// which requests without a token use. They exist without being stored;
// storing one (a changed description, policies given to the anonymous
// token) overrides the built-in.
const (
	GlobalManagementID   = "00000000-0000-0000-0000-000000000001"
	GlobalManagementName = "global-management"
	AnonymousAccessorID  = "00000000-0000-0000-0000-000000000002"
	AnonymousSecretID    = "anonymous"
	// ManagementRules is how the global-management policy reads; the
	// resolver grants it everything whatever its text.
	ManagementRules = "acl = \"write\"\noperator = \"write\"\nkey_prefix \"\" {\n  policy = \"write\"\n}\nsession_prefix \"\" {\n  policy = \"write\"\n}\n"
)

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

// BuiltinPolicy is the built-in policy with id, if there is one.
func BuiltinPolicy(id string) (Policy, bool) {
	if id != GlobalManagementID {
		return Policy{}, false
	}
	return Policy{ID: GlobalManagementID, Name: GlobalManagementName,
		Description: "Builtin Policy that grants unlimited access", Rules: ManagementRules}, true
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
	policyName = regexp.MustCompile(`^[A-Za-z0-9\-_]{1,128}$`)
	uuidForm   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// ValidatePolicy checks what can be checked without the stored state:
// Consul's name rule and rules that parse.
func ValidatePolicy(p *Policy) error {
	if !policyName.MatchString(p.Name) {
		return fmt.Errorf("%w: Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed", kv.ErrInvalid)
	}
	if _, err := Parse(p.Rules); err != nil {
		return fmt.Errorf("%w: Invalid Policy: %v", kv.ErrInvalid, err)
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
