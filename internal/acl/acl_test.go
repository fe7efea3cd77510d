package acl

import (
	"errors"
	"testing"
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

// FuzzParse: no input panics the parser, and rules that fail to parse
// never come back as a policy.
func FuzzParse(f *testing.F) {
	for _, s := range []string{example, `{"key":{"a":{"policy":"read"}}}`, `acl = "write"`, `key "" { policy = "deny" }`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rules string) {
		p, err := Parse(rules)
		if err != nil {
			if p != nil || !errors.Is(err, ErrBadRules) {
				t.Fatalf("%q: a failed parse returned %+v, %v", rules, p, err)
			}
			return
		}
		a := New(false, p)
		_ = a.KeyRead("x") || a.KeyWritePrefix("") || a.OperatorWrite() || a.ACLWrite() || a.SessionWrite("n")
	})
}
