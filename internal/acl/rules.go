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
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"

	"github.com/raftkv/raftkv/kv"
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
// keyring, mesh…) are checked (see vocabulary) and otherwise ignored, so
// that Consul's policies load.
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

// Parse reads rules in Consul's HCL or JSON form, as a policy's rules are
// checked on the way in. Anything that does not parse, a word that is not
// Consul's (a block, a field: `key_prefx`, `polcy`) or a policy value that
// is not read, write or deny (or list, for keys) is an error wrapping
// ErrBadRules, in Consul's words where Consul has some ("Failed to parse
// ACL rules: …", "Invalid operator policy: …"): a rule is never guessed at.
func Parse(rules string) (*Rules, error) { return parse(rules, true) }

// parseStored reads the rules of a stored policy (the resolver's). Unknown
// words are skipped rather than refused: an earlier raftkv accepted and
// ignored them, and a policy it stored must keep granting what its other
// rules grant.
func parseStored(rules string) (*Rules, error) { return parse(rules, false) }

func parse(rules string, strict bool) (*Rules, error) {
	p := &Rules{Keys: map[string]Access{}, KeyPrefixes: map[string]Access{},
		Sessions: map[string]Access{}, SessionPrefixes: map[string]Access{}}
	if strings.TrimSpace(rules) == "" {
		return p, nil
	}
	f, err := decode(rules, strict)
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

// badRules is a refusal of rules, in words a client is shown as they are.
func badRules(format string, args ...any) error {
	return kv.Errorf(ErrBadRules, format, args...)
}

// decode parses rules (strict: checked word by word against Consul's
// vocabulary first) and decodes what raftkv uses. The HCL parser and
// decoder panic on some malformed input (the JSON scanner on a truncated
// escape, found by FuzzParse; a key that does not unquote): a panic is a
// parse error like any other.
func decode(rules string, strict bool) (f rulesFile, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = badRules("Failed to parse ACL rules: %v", p)
		}
	}()
	file, err := hcl.Parse(rules)
	if err != nil {
		return f, badRules("Failed to parse ACL rules: %v", err)
	}
	if strict {
		list, ok := file.Node.(*ast.ObjectList)
		if !ok {
			return f, badRules("Failed to parse ACL rules: not a set of rules")
		}
		if err := checkRules(list); err != nil {
			return f, err
		}
	}
	if err := hcl.DecodeObject(&f, file); err != nil {
		return f, badRules("Failed to parse ACL rules: %v", err)
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

// Consul's rule language, every word of it (Consul's acl/policy.go, and
// Enterprise's scopes), whether raftkv uses it or not.
var (
	// scalars: `operator = "read"`.
	scalars = map[string]bool{"acl": true, "operator": true, "keyring": true, "mesh": true, "peering": true}
	// blocks: `key "app/" { policy = "read" }`, with the fields each takes.
	// Only key rules take "list".
	blocks = map[string]map[string]bool{
		"key": policyField, "key_prefix": policyField,
		"session": policyField, "session_prefix": policyField,
		"agent": policyField, "agent_prefix": policyField,
		"event": policyField, "event_prefix": policyField,
		"node": policyField, "node_prefix": policyField,
		"query": policyField, "query_prefix": policyField,
		"service": intentionFields, "service_prefix": intentionFields,
		"identity": intentionFields, "identity_prefix": intentionFields,
	}
	policyField     = map[string]bool{"policy": true}
	intentionFields = map[string]bool{"policy": true, "intentions": true}
	// scopes: Consul Enterprise's `namespace "ns" { <rules> }` and
	// `partition "p" { <rules> }`. Their rules are checked, and ignored:
	// raftkv has neither.
	scopes = map[string]bool{"namespace": true, "namespace_prefix": true, "partition": true, "partition_prefix": true}
)

// checkRules refuses, in list, a word Consul's language does not have, a
// value that is not one of its policies, and a value set twice.
func checkRules(list *ast.ObjectList) error {
	seen := map[string]bool{}
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			return badRules("Failed to parse ACL rules: a value without a name")
		}
		name := keyText(item.Keys[0])
		switch {
		case scalars[name]:
			if len(item.Keys) > 1 {
				return badRules("Failed to parse ACL rules: %s takes a value (%s = \"read\"), not a block", name, name)
			}
			if seen[name] {
				return badRules("Failed to parse ACL rules: %s is set twice", name)
			}
			seen[name] = true
			if err := checkValue(item.Val, name, "", false); err != nil {
				return err
			}
		case blocks[name] != nil || scopes[name]:
			named, err := blocksOf(name, item)
			if err != nil {
				return err
			}
			for _, b := range named {
				if scopes[name] {
					err = checkRules(b.body.List)
				} else {
					err = checkBlock(name, b.label, b.body)
				}
				if err != nil {
					return err
				}
			}
		default:
			if _, isBlock := item.Val.(*ast.ObjectType); isBlock {
				return badRules("Failed to parse ACL rules: unknown block %q", name)
			}
			return badRules("Failed to parse ACL rules: unknown field %q", name)
		}
	}
	return nil
}

type namedBlock struct {
	label string
	body  *ast.ObjectType
}

// blocksOf is what one item of a block word holds: `key "a" { … }` (the
// HCL form, and JSON's once flattened) or `key { "a" { … } "b" { … } }`.
func blocksOf(name string, item *ast.ObjectItem) ([]namedBlock, error) {
	body, ok := item.Val.(*ast.ObjectType)
	if !ok {
		return nil, badRules("Failed to parse ACL rules: %s is a block (%s \"<name>\" { policy = \"read\" })", name, name)
	}
	switch len(item.Keys) {
	case 2:
		return []namedBlock{{keyText(item.Keys[1]), body}}, nil
	case 1:
		var out []namedBlock
		for _, inner := range body.List.Items {
			b, ok := inner.Val.(*ast.ObjectType)
			if len(inner.Keys) != 1 || !ok {
				return nil, badRules("Failed to parse ACL rules: %s without a name (%s \"<name>\" { policy = \"read\" })", name, name)
			}
			out = append(out, namedBlock{keyText(inner.Keys[0]), b})
		}
		return out, nil
	}
	return nil, badRules("Failed to parse ACL rules: %s %q takes one name, not %d", name, keyText(item.Keys[1]), len(item.Keys)-1)
}

// checkBlock checks the fields of one block: known, each set once, and
// a policy that is there and valid.
func checkBlock(name, label string, body *ast.ObjectType) error {
	seen := map[string]bool{}
	for _, field := range body.List.Items {
		if len(field.Keys) == 0 {
			return badRules("Failed to parse ACL rules: a value without a name in %s %q", name, label)
		}
		f := keyText(field.Keys[0])
		if len(field.Keys) > 1 || !blocks[name][f] {
			return badRules("Failed to parse ACL rules: unknown field %q in %s %q", f, name, label)
		}
		if seen[f] {
			return badRules("Failed to parse ACL rules: %s is set twice in %s %q", f, name, label)
		}
		seen[f] = true
		what := name
		if f != "policy" {
			what += " " + f
		}
		if err := checkValue(field.Val, what, fmt.Sprintf(" on %q", label), f == "policy" && (name == "key" || name == "key_prefix")); err != nil {
			return err
		}
	}
	if !seen["policy"] {
		return badRules("Invalid %s policy: none given for %q", name, label)
	}
	return nil
}

// checkValue checks a policy value: read, write, deny, and list where
// list is allowed. The refusal is Consul's: `Invalid operator policy:
// "rwrite"` (then on, the block's name, for a block's).
func checkValue(val ast.Node, what, on string, listOK bool) error {
	lit, ok := val.(*ast.LiteralType)
	if !ok || (lit.Token.Type != token.STRING && lit.Token.Type != token.HEREDOC) {
		return badRules("Invalid %s policy%s: not a string", what, on)
	}
	v, _ := lit.Token.Value().(string)
	switch v {
	case "read", "write", "deny":
		return nil
	case "list":
		if listOK {
			return nil
		}
	}
	return badRules("Invalid %s policy: %q%s", what, v, on)
}

// keyText is a key as written, unquoted.
func keyText(k *ast.ObjectKey) string {
	if s, ok := k.Token.Value().(string); ok {
		return s
	}
	return k.Token.Text
}
