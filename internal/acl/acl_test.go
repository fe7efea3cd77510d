package acl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

func mustParse(t *testing.T, rules string) *Rules {
	t.Helper()
	p, err := Parse(rules)
	if err != nil {
		t.Fatalf("parse %q: %v", rules, err)
	}
	return p
}

const example = `
key_prefix "" { policy = "read" }
key_prefix "foo/" { policy = "write" }
key_prefix "foo/private/" { policy = "deny" }
key "foo/bar/secret" { policy = "deny" }
key "foo/private/shared" { policy = "read" }
key_prefix "names/" { policy = "list" }
session_prefix "" { policy = "read" }
session "web-1" { policy = "write" }
operator = "read"
service_prefix "" { policy = "write" }
`

// The rule engine, table by table: longest prefix, exact beats prefix,
// deny, list, defaults, merging of several policies.
func TestAuthorizer(t *testing.T) {
	p := mustParse(t, example)
	for _, def := range []bool{false, true} {
		a := New(def, p)
		for _, c := range []struct {
			what string
			got  bool
			want bool
		}{
			{"read anywhere (key_prefix \"\")", a.KeyRead("other"), true},
			{"write outside foo/", a.KeyWrite("other"), false},
			{"write under foo/", a.KeyWrite("foo/a"), true},
			{"longest prefix: deny under foo/private/", a.KeyRead("foo/private/x"), false},
			{"exact beats prefix: foo/private/shared readable", a.KeyRead("foo/private/shared"), true},
			{"exact beats prefix: foo/private/shared not writable", a.KeyWrite("foo/private/shared"), false},
			{"exact deny inside a writable prefix", a.KeyRead("foo/bar/secret"), false},
			{"an exact rule is not a prefix", a.KeyRead("foo/bar/secret2"), true},
			{"list: names are visible", a.KeyList("names/x"), true},
			{"list: values are not", a.KeyRead("names/x"), false},
			{"read implies list", a.KeyList("other"), true},
			{"deny hides names too", a.KeyList("foo/private/x"), false},
			{"delete-tree over a denied key", a.KeyWritePrefix("foo/bar/"), false},
			{"delete-tree over a denied prefix", a.KeyWritePrefix("foo/"), false},
			{"delete-tree where everything is writable", a.KeyWritePrefix("foo/a/"), true},
			{"delete-tree of a read-only prefix", a.KeyWritePrefix("other/"), false},
			{"session of any node: read", a.SessionRead("db-1"), true},
			{"session of any node: no write", a.SessionWrite("db-1"), false},
			{"session of web-1: write", a.SessionWrite("web-1"), true},
			{"operator read", a.OperatorRead(), true},
			{"operator write", a.OperatorWrite(), false},
			{"acl unset falls to the default", a.ACLRead(), def},
		} {
			if c.got != c.want {
				t.Errorf("default allow=%v: %s: got %v", def, c.what, c.got)
			}
		}
	}

	// No rule at all: the default decides.
	if a := New(true); !a.KeyWrite("x") || !a.OperatorWrite() || !a.KeyWritePrefix("") {
		t.Error("default allow must allow")
	}
	if a := New(false); a.KeyRead("x") || a.KeyList("x") || a.OperatorRead() || a.SessionRead("n") {
		t.Error("default deny must deny")
	}
	// Merging policies: the most permissive wins, deny beats everything.
	readOnly := mustParse(t, `key_prefix "app/" { policy = "read" }`)
	writer := mustParse(t, `key_prefix "app/" { policy = "write" }`)
	denier := mustParse(t, `key_prefix "app/" { policy = "deny" }`)
	if a := New(false, readOnly, writer); !a.KeyWrite("app/x") {
		t.Error("read + write must merge to write")
	}
	if a := New(false, writer, denier); a.KeyRead("app/x") {
		t.Error("deny must win a merge")
	}
	if a := Management(); !a.KeyWritePrefix("") || !a.ACLWrite() || !a.KeyRead("foo/private/x") {
		t.Error("management allows everything")
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		`key "a" { policy = "admin" }`,
		`key_prefix "a" { policy = "" }`,
		`operator = "list"`,
		`acl = "root"`,
		`key "a" {`,
		`{"key": 3}`,
		`key_prefix "a" { policy = ["read"] }`,
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrBadRules) {
			t.Errorf("%q: %v, want ErrBadRules", bad, err)
		}
	}
	json := `{"key_prefix":{"app/":{"policy":"write"}},"acl":"read"}`
	p := mustParse(t, json)
	if p.KeyPrefixes["app/"] != Write || p.ACL != Read {
		t.Fatalf("JSON rules: %+v", p)
	}
}

// A word Consul's language does not have, or a policy value it does not
// know, is refused with a reason that names it, in HCL and in JSON; what
// Consul knows and raftkv does not use still loads.
func TestParseRefusesUnknownWords(t *testing.T) {
	for _, c := range []struct{ rules, want string }{
		{`key_prefx "" { policy = "read" }`, `Failed to parse ACL rules: unknown block "key_prefx"`},
		{`{"key_prefx": {"": {"policy": "read"}}}`, `Failed to parse ACL rules: unknown block "key_prefx"`},
		{`key "" { polcy = "read" }`, `Failed to parse ACL rules: unknown field "polcy" in key ""`},
		{`{"key": {"": {"polcy": "read"}}}`, `Failed to parse ACL rules: unknown field "polcy" in key ""`},
		{`operator = "rwrite"`, `Invalid operator policy: "rwrite"`},
		{`{"operator": "rwrite"}`, `Invalid operator policy: "rwrite"`},
		{`opertor = "read"`, `Failed to parse ACL rules: unknown field "opertor"`},
		{`{"opertor": "read"}`, `Failed to parse ACL rules: unknown field "opertor"`},
		{`key_prefix "app/" { policy = "rwrite" }`, `Invalid key_prefix policy: "rwrite" on "app/"`},
		{`{"key_prefix": {"app/": {"policy": "rwrite"}}}`, `Invalid key_prefix policy: "rwrite" on "app/"`},
		{`service_prefix "" { policy = "read" intentions = "lists" }`, `Invalid service_prefix intentions policy: "lists" on ""`},
		{`node_prefix "" { policy = "list" }`, `Invalid node_prefix policy: "list" on ""`}, // list: keys only
		{`session_prefix "" { policy = "list" }`, `Invalid session_prefix policy: "list" on ""`},
		{`keyring = "sudo"`, `Invalid keyring policy: "sudo"`},
		{`key "a" { }`, `Invalid key policy: none given for "a"`},
		{`operator = "read"` + "\n" + `operator = "write"`, `Failed to parse ACL rules: operator is set twice`},
		{`key "a" { policy = "read" policy = "write" }`, `Failed to parse ACL rules: policy is set twice in key "a"`},
		{`key_prefix { policy = "read" }`, `Failed to parse ACL rules: key_prefix without a name (key_prefix "<name>" { policy = "read" })`},
		{`operator "x" { policy = "read" }`, `Failed to parse ACL rules: operator takes a value (operator = "read"), not a block`},
		{`namespace "ns" { key_prefx "" { policy = "read" } }`, `Failed to parse ACL rules: unknown block "key_prefx"`},
	} {
		p, err := Parse(c.rules)
		if p != nil || !errors.Is(err, ErrBadRules) || err.Error() != c.want {
			t.Errorf("%s:\n got %v\nwant %s", c.rules, err, c.want)
		}
		// Stored before raftkv checked words, an unknown one is skipped,
		// not the whole policy; a bad policy value is refused as before.
		if strings.HasPrefix(c.rules, "{") {
			continue
		}
		if stored, err := parseStored(c.rules + "\nkey \"kept\" { policy = \"write\" }"); err == nil && stored.Keys["kept"] != Write {
			t.Errorf("%s: stored rules lost their other rules: %+v", c.rules, stored)
		}
	}
	if p, err := parseStored(`key_prefx "" { policy = "write" }` + "\n" + `key "kept" { policy = "read" }`); err != nil || p.Keys["kept"] != Read || len(p.KeyPrefixes) != 0 {
		t.Fatalf("stored rules with an unknown block: %+v %v", p, err)
	}

	// Consul's whole vocabulary loads, HCL and JSON, Enterprise's scopes
	// included; raftkv keeps what it has.
	p := mustParse(t, `
acl = "read"
operator = "write"
keyring = "read"
mesh = "write"
peering = "deny"
agent "a" { policy = "read" }
agent_prefix "" { policy = "write" }
event "e" { policy = "read" }
event_prefix "" { policy = "deny" }
node "n" { policy = "write" }
node_prefix "" { policy = "read" }
query "q" { policy = "read" }
query_prefix "" { policy = "write" }
service "web" { policy = "write" intentions = "read" }
service_prefix "" { policy = "read" }
identity_prefix "" { policy = "read" }
session "n1" { policy = "write" }
session_prefix "" { policy = "read" }
key "k" { policy = "list" }
key_prefix "p/" { policy = "write" }
namespace_prefix "" { key_prefix "" { policy = "read" } }
partition "default" { namespace "default" { node_prefix "" { policy = "read" } } }
`)
	if p.ACL != Read || p.Operator != Write || p.Sessions["n1"] != Write || p.SessionPrefixes[""] != Read ||
		p.Keys["k"] != List || p.KeyPrefixes["p/"] != Write || len(p.KeyPrefixes) != 1 {
		t.Fatalf("Consul's vocabulary: %+v", p)
	}
	p = mustParse(t, `{"service_prefix": {"": {"policy": "read", "intentions": "write"}}, "key": [{"k": {"policy": "deny"}}], "peering": "read"}`)
	if p.Keys["k"] != Deny {
		t.Fatalf("JSON vocabulary: %+v", p)
	}

	// The built-in policies' own rules pass the check they impose.
	for _, b := range BuiltinPolicies() {
		if _, err := Parse(b.Rules); err != nil {
			t.Errorf("built-in %s: %v", b.Name, err)
		}
	}
}

// global-read-only reads everything, ACLs included (without secrets:
// those need acl write), and writes nothing, whatever the default.
func TestGlobalReadOnly(t *testing.T) {
	b, ok := BuiltinPolicy(GlobalReadOnlyID)
	if !ok || b.Name != GlobalReadOnlyName {
		t.Fatalf("built-in %s: %+v", GlobalReadOnlyID, b)
	}
	for _, name := range []string{GlobalReadOnlyName, GlobalReadOnlyAlias} {
		if p, ok := BuiltinPolicyByName(name); !ok || p.ID != GlobalReadOnlyID {
			t.Errorf("by name %q: %+v", name, p)
		}
	}
	if p, ok := BuiltinPolicyByName(GlobalManagementName); !ok || p.ID != GlobalManagementID {
		t.Errorf("global-management by name: %+v", p)
	}
	if _, ok := BuiltinPolicyByName("builtin/other"); ok {
		t.Error("an unknown builtin/ name")
	}
	for _, def := range []bool{false, true} {
		a := New(def, mustParse(t, b.Rules))
		if !a.KeyRead("any") || !a.KeyList("any") || !a.SessionRead("n1") || !a.OperatorRead() || !a.ACLRead() {
			t.Errorf("default allow=%v: global-read-only must read everything", def)
		}
		if a.KeyWrite("any") || a.KeyWritePrefix("") || a.SessionWrite("n1") || a.OperatorWrite() || a.ACLWrite() {
			t.Errorf("default allow=%v: global-read-only must write nothing", def)
		}
	}
}

// Names: Consul's rule (one '/' allowed), "builtin/" reserved for the
// built-ins, which keep theirs.
func TestValidatePolicyNames(t *testing.T) {
	for _, c := range []struct {
		p  Policy
		ok bool
	}{
		{Policy{Name: "team/app"}, true},
		{Policy{Name: "app_1-x"}, true},
		{Policy{Name: "a/b/c"}, false},
		{Policy{Name: "/a"}, false},
		{Policy{Name: ""}, false},
		{Policy{Name: strings.Repeat("a", 129)}, false},
		{Policy{Name: "builtin/global-read-only"}, false},
		{Policy{Name: "builtin/mine"}, false},
		{Policy{ID: GlobalReadOnlyID, Name: GlobalReadOnlyName, Rules: GlobalReadOnlyRules}, true},
		{Policy{ID: GlobalReadOnlyID, Name: "renamed", Rules: GlobalReadOnlyRules}, true},
	} {
		if err := ValidatePolicy(&c.p); (err == nil) != c.ok {
			t.Errorf("%q (ID %q): %v, want ok=%v", c.p.Name, c.p.ID, err, c.ok)
		}
	}
	err := ValidatePolicy(&Policy{Name: "p", Rules: `key_prefx "" { policy = "read" }`})
	if !errors.Is(err, kv.ErrInvalid) || err.Error() != `Failed to parse ACL rules: unknown block "key_prefx"` {
		t.Fatalf("bad rules: %v", err)
	}
}

// FuzzParse: no input panics the parser, and rules that fail to parse
// never come back as a policy.
func FuzzParse(f *testing.F) {
	for _, s := range []string{example, `{"key":{"a":{"policy":"read"}}}`, `acl = "write"`, `key "" { policy = "deny" }`, ``,
		GlobalReadOnlyRules, `key_prefx "" { polcy = "rwrite" }`, `namespace "n" { key { "a" { policy = "list" } } }`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rules string) {
		stored, storedErr := parseStored(rules)
		p, err := Parse(rules)
		if storedErr != nil && err == nil {
			t.Fatalf("%q: the stored parse is stricter than the check on the way in: %v", rules, storedErr)
		}
		if err == nil && fmt.Sprint(stored) != fmt.Sprint(p) {
			t.Fatalf("%q: rules that pass the check read differently when stored: %+v, %+v", rules, p, stored)
		}
		if err != nil {
			if p != nil || !errors.Is(err, ErrBadRules) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: a failed parse returned %+v, %v", rules, p, err)
			}
			return
		}
		a := New(false, p)
		_ = a.KeyRead("x") || a.KeyWritePrefix("") || a.OperatorWrite() || a.ACLWrite() || a.SessionWrite("n")
	})
}
