package kv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, c := range codes {
		wrapped := fmt.Errorf("context: %w", c.err)
		back := FromCode(Code(wrapped), wrapped.Error())
		if !errors.Is(back, c.err) {
			t.Fatalf("%v did not survive the wire", c.err)
		}
		if back.Error() != wrapped.Error() {
			t.Fatalf("message changed: %q → %q", wrapped, back)
		}
	}
	if Code(errors.New("boom")) != "internal" {
		t.Fatal("unknown errors must be internal")
	}
}

func TestCommandValidate(t *testing.T) {
	ok := Command{Ops: []Op{{Verb: VerbSet, Key: "k", Value: []byte("v")}}}
	if err := ok.Validate(10); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cmd  Command
		want error
	}{
		{"empty", Command{}, ErrInvalid},
		{"too many ops", Command{Ops: make([]Op, MaxTxnOps+1)}, ErrTooLarge},
		{"bad verb", Command{Ops: []Op{{Verb: 99, Key: "k"}}}, ErrInvalid},
		{"missing key", Command{Ops: []Op{{Verb: VerbSet}}}, ErrInvalid},
		{"long key", Command{Ops: []Op{{Verb: VerbSet, Key: strings.Repeat("k", MaxKeyBytes+1)}}}, ErrInvalid},
		{"big value", Command{Ops: []Op{{Verb: VerbSet, Key: "k", Value: make([]byte, 11)}}}, ErrTooLarge},
	}
	for _, c := range cases {
		if err := c.cmd.Validate(10); !errors.Is(err, c.want) {
			t.Fatalf("%s: err=%v, want %v", c.name, err, c.want)
		}
	}
	// An empty prefix is fine for tree operations.
	tree := Command{Ops: []Op{{Verb: VerbDeleteTree, Key: ""}}}
	if err := tree.Validate(0); err != nil {
		t.Fatal(err)
	}
	for v := range verbNames {
		p, err := ParseVerb(v.String())
		if v.Internal() {
			if err == nil {
				t.Fatalf("internal verb %v accepted from a client", v)
			}
			continue
		}
		if err != nil || p != v {
			t.Fatalf("verb %v does not round-trip", v)
		}
	}
	for _, c := range []Command{
		{Ops: []Op{{Verb: VerbLock, Key: "k"}}},
		{Ops: []Op{{Verb: VerbSessionDestroy, Session: "s"}, {Verb: VerbSet, Key: "k"}}},
	} {
		if err := c.Validate(0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%+v: %v, want ErrInvalid", c.Ops, err)
		}
	}
}

// The Lease is what a lock holder counts on: its TTL, else NodeFailAfter
// for a session that follows its node, else nothing ends it but a destroy.
func TestSessionLease(t *testing.T) {
	for _, c := range []struct {
		s    Session
		want time.Duration
	}{
		{Session{TTL: "60s", NodeChecks: []string{SerfHealth}}, time.Minute},
		{Session{TTL: "15s"}, 15 * time.Second},
		{Session{NodeChecks: []string{SerfHealth}}, NodeFailAfter},
		{Session{}, 0},
	} {
		if got := c.s.Lease(); got != c.want {
			t.Errorf("%+v: lease %s, want %s", c.s, got, c.want)
		}
	}
}
