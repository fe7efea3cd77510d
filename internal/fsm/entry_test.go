package fsm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

var updateGolden = flag.Bool("update", false, "rewrite the v3 lines of testdata/entries.txt")

const goldenSessionID = "6a1f0c3e-0000-4000-8000-000000000001"

// goldenEntries are what the lines of testdata/entries.txt decode to.
func goldenEntries() map[string]*Entry {
	at := time.Unix(1_800_000_000, 123456789)
	timed := func(e *Entry) *Entry { e.Time = at; return e }
	kvAt := func(c kv.Command) *Entry { c.Time = at; return KVEntry(&c) }
	aclAt := func(c *acl.Command) *Entry { return timed(ACLEntry(c)) }
	tokenSet := aclAt(&acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "acc-2", Description: "d", Local: true,
		Policies: []acl.PolicyLink{{ID: "pol-1"}, {Name: "web"}}, CreateTime: time.Date(2027, 1, 15, 9, 55, 2, 5, time.UTC), CreateIndex: 4, ModifyIndex: 5}})
	tokenSet.IdempotencyKey = "req-3"
	return map[string]*Entry{
		"kv-v1": kvAt(kv.Command{IdempotencyKey: "req-1", Ops: []kv.Op{
			{Verb: kv.VerbSet, Key: "a", Value: []byte("1"), Flags: 7}, {Verb: kv.VerbDeleteCAS, Key: "b", Index: 9}}}),
		"kv-v1-no-time": KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbDeleteTree, Key: ""}}}),
		"kv-v2": kvAt(kv.Command{IdempotencyKey: "req-2", RequestDigest: []byte{0xde, 0xad}, Ops: []kv.Op{
			{Verb: kv.VerbLock, Key: "l", Value: []byte("v"), Session: "s1"}, {Verb: kv.VerbGet, Key: "a"}}}),
		// An internal verb among other ops is a KV command, which the
		// state machine refuses ("unknown verb").
		"kv-v2-internal-verb-among-others": kvAt(kv.Command{Ops: []kv.Op{
			{Verb: kv.VerbSet, Key: "a"}, {Verb: kv.VerbSessionDestroy, Session: "s1"}}}),
		"session-create": timed(SessionCreateEntry(kv.Session{ID: goldenSessionID, Name: "web", Node: "n1",
			LockDelay: 15 * time.Second, Behavior: kv.BehaviorRelease, TTL: "30s", NodeChecks: []string{kv.SerfHealth}})),
		"session-create-no-checks": timed(SessionCreateEntry(kv.Session{ID: "s2", Node: "n2", Behavior: kv.BehaviorDelete, NodeChecks: []string{}})),
		"session-create-unparsed":  timed(&Entry{Kind: KindSessionCreate, Session: &kv.Session{ID: "s3"}, Unparsed: &LegacyBody{Bytes: []byte{1, 200}}}),
		"session-destroy":          timed(SessionDestroyEntry(goldenSessionID)),
		"replica-mark-set":         timed(ReplicaMarkEntry("node-4", true)),
		"replica-mark-clear":       timed(ReplicaMarkEntry("node-4", false)),
		"acl-bootstrap": aclAt(&acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{AccessorID: "acc-1", SecretID: "sec-1",
			Description: "Bootstrap Token (Global Management)"}}),
		"acl-policy-set": aclAt(&acl.Command{Op: acl.OpPolicySet, Create: true, Policy: &acl.Policy{ID: "pol-1", Name: "web",
			Description: "web keys", Rules: `key_prefix "web/" { policy = "write" }`}}),
		"acl-token-set":             tokenSet,
		"acl-token-set-empty-links": aclAt(&acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "acc-2", Policies: []acl.PolicyLink{}}}),
		"acl-policy-delete":         aclAt(&acl.Command{Op: acl.OpPolicyDelete, ID: "pol-1"}),
		"acl-peer-secret":           aclAt(&acl.Command{Op: acl.OpPeerSecret, ID: "peer-1"}),
		"acl-unparsed":              timed(&Entry{Kind: KindACL, Unparsed: &LegacyBody{Bytes: []byte(`{"Op":`)}}),
	}
}

// hasV3 reports whether e is written as v3 (KV entries and unparsed legacy
// bodies are written in the legacy form only).
func hasV3(e *Entry) bool { return e.Kind != KindKV && e.Unparsed == nil }

type goldenLine struct{ form, name, hex string }

func readGolden(t *testing.T) (header []string, lines []goldenLine) {
	t.Helper()
	f, err := os.Open("testdata/entries.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "#") || strings.TrimSpace(s.Text()) == "" {
			header = append(header, s.Text())
			continue
		}
		fields := strings.Fields(s.Text())
		if len(fields) != 3 {
			t.Fatalf("bad golden line %q", s.Text())
		}
		lines = append(lines, goldenLine{fields[0], fields[1], fields[2]})
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return header, lines
}

// TestGoldenEntries: the legacy forms (written by the versions before v3)
// decode to their typed entries and are still what EncodeLegacyEntry
// writes; the v3 forms are what EncodeEntry writes and decode back.
func TestGoldenEntries(t *testing.T) {
	want := goldenEntries()
	header, lines := readGolden(t)
	if *updateGolden {
		var out bytes.Buffer
		for _, h := range header {
			fmt.Fprintln(&out, h)
		}
		for _, l := range lines {
			if l.form == "legacy" {
				fmt.Fprintln(&out, l.form, l.name, l.hex)
			}
		}
		for _, l := range lines {
			if e := want[l.name]; l.form == "legacy" && e != nil && hasV3(e) {
				fmt.Fprintln(&out, "v3", l.name, hex.EncodeToString(EncodeEntry(e)))
			}
		}
		if err := os.WriteFile("testdata/entries.txt", out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		_, lines = readGolden(t)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		seen[l.form+" "+l.name] = true
		e := want[l.name]
		if e == nil {
			t.Fatalf("%s %s: no expected entry", l.form, l.name)
		}
		b, err := hex.DecodeString(l.hex)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEntry(b)
		if err != nil {
			t.Fatalf("%s %s: %v", l.form, l.name, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s %s decodes to\n%s\nwant\n%s", l.form, l.name, dumpEntry(got), dumpEntry(e))
		}
		switch l.form {
		case "legacy":
			if enc := EncodeLegacyEntry(e); !bytes.Equal(enc, b) {
				t.Errorf("legacy %s: EncodeLegacyEntry writes %x, the legacy form is %x", l.name, enc, b)
			}
			if !hasV3(e) {
				if enc := EncodeEntry(e); !bytes.Equal(enc, b) {
					t.Errorf("legacy %s: EncodeEntry writes %x, want the legacy form %x", l.name, enc, b)
				}
			}
		case "v3":
			if enc := EncodeEntry(e); !bytes.Equal(enc, b) {
				t.Errorf("v3 %s: EncodeEntry writes %x, golden %x (a format change takes a new version)", l.name, enc, b)
			}
		default:
			t.Fatalf("unknown form %q", l.form)
		}
	}
	for name, e := range want {
		if !seen["legacy "+name] || hasV3(e) && !seen["v3 "+name] {
			t.Errorf("%s: golden line missing (go test -run TestGoldenEntries -update ./fsm/ writes v3 lines)", name)
		}
	}
}

func dumpEntry(e *Entry) string {
	s := fmt.Sprintf("%+v", *e)
	if e.KV != nil {
		s += fmt.Sprintf("\n  KV: %+v", *e.KV)
	}
	if e.Session != nil {
		s += fmt.Sprintf("\n  Session: %+v", *e.Session)
	}
	if e.ACL != nil {
		s += fmt.Sprintf("\n  ACL: %+v", *e.ACL)
		if e.ACL.Policy != nil {
			s += fmt.Sprintf(" policy %+v", *e.ACL.Policy)
		}
		if e.ACL.Token != nil {
			s += fmt.Sprintf(" token %+v", *e.ACL.Token)
		}
	}
	if e.Replica != nil {
		s += fmt.Sprintf("\n  Replica: %+v", *e.Replica)
	}
	if e.Unparsed != nil {
		s += fmt.Sprintf("\n  Unparsed: %q", e.Unparsed.Bytes)
	}
	return s
}

// A KV entry is today's command bytes: older nodes keep applying KV writes.
func TestKVEntryIsTheCommand(t *testing.T) {
	for _, c := range []*kv.Command{
		{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "a", Value: []byte("1")}}, Time: time.Unix(1700000000, 5)},
		{Ops: []kv.Op{{Verb: kv.VerbLock, Key: "a", Session: "s"}}, IdempotencyKey: "k", RequestDigest: []byte("d")},
		{Ops: []kv.Op{{Verb: kv.VerbCAS, Key: "a", Index: 3}}, IdempotencyKey: "k"},
		{},
	} {
		want := EncodeCommand(c)
		if got := EncodeEntry(KVEntry(c)); !bytes.Equal(got, want) {
			t.Errorf("%+v: EncodeEntry %x, EncodeCommand %x", c, got, want)
		}
		if got := EncodeLegacyEntry(KVEntry(c)); !bytes.Equal(got, want) {
			t.Errorf("%+v: EncodeLegacyEntry %x, EncodeCommand %x", c, got, want)
		}
		// The entry's time is the one written: the proposer stamps it.
		e := KVEntry(c)
		e.Time = time.Unix(1800000000, 0)
		stamped := *c
		stamped.Time = e.Time
		if got := EncodeEntry(e); !bytes.Equal(got, EncodeCommand(&stamped)) {
			t.Errorf("%+v: the entry's time is not the one written", c)
		}
	}
}

// fill sets every exported field reachable from v to a value that is not
// the zero value (slices of two, pointers allocated), so that a field
// added to a body's type and forgotten by the encoding shows as a
// difference after a round trip.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		v.SetUint(uint64(*n))
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		v.SetInt(int64(*n) * 1001)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), n)
		}
		v.Set(s)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2030, 3, 4, 5, 6, 7, *n, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), n)
			}
		}
	default:
		t.Fatalf("fill: a %s field (%s): teach this test and the entry encoding about it", v.Kind(), v.Type())
	}
}

func filled[T any](t *testing.T) *T {
	var v T
	n := 0
	fill(t, reflect.ValueOf(&v).Elem(), &n)
	return &v
}

// TestEntryRoundTripsEveryField: every field of every body survives both
// encodings exactly, nil and empty kept apart where the v3 form can tell.
func TestEntryRoundTripsEveryField(t *testing.T) {
	envelope := func(e *Entry) *Entry {
		e.Time, e.IdempotencyKey, e.RequestDigest = time.Unix(1800000000, 42), "idem", []byte{0, 1, 2}
		return e
	}
	zone := time.FixedZone("", -(3*3600 + 30*60))
	withZone := filled[acl.Command](t)
	withZone.Token.CreateTime = time.Date(1999, 12, 31, 23, 59, 59, 999999999, zone)
	nilLinks := &acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "a"}}
	emptyLinks := &acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "a", Policies: []acl.PolicyLink{}}}
	entries := []*Entry{
		envelope(SessionCreateEntry(*filled[kv.Session](t))),
		envelope(SessionCreateEntry(kv.Session{ID: "x", NodeChecks: []string{}})),
		envelope(SessionCreateEntry(kv.Session{ID: "x"})),
		envelope(SessionCreateEntry(kv.Session{LockDelay: -time.Second})),
		envelope(SessionDestroyEntry("id")),
		envelope(ACLEntry(filled[acl.Command](t))),
		envelope(ACLEntry(withZone)),
		envelope(ACLEntry(nilLinks)),
		envelope(ACLEntry(emptyLinks)),
		envelope(ACLEntry(&acl.Command{})),
		envelope(ReplicaMarkEntry("n", true)),
		ReplicaMarkEntry("", false),
		KVEntry(filled[kv.Command](t)),
	}
	for _, e := range entries {
		b := EncodeEntry(e)
		if !bytes.Equal(b, EncodeEntry(e)) {
			t.Fatalf("%s: encoding is not deterministic", e.Kind)
		}
		got, err := DecodeEntry(b)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		want := e
		if e.Kind == KindKV { // times come back in the local zone, as DecodeCommand's
			c := *e.KV
			c.Time = time.Unix(0, e.Time.UnixNano())
			want = KVEntry(&c)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("v3 round trip of a %s entry:\n%s\nwant\n%s", e.Kind, dumpEntry(got), dumpEntry(want))
		}
		// The legacy form carries the same, but for what it cannot tell
		// apart: no session checks from none, a zone from its offset.
		legacy, err := DecodeEntry(EncodeLegacyEntry(e))
		if err != nil {
			t.Fatalf("%s legacy: %v", e.Kind, err)
		}
		if !sameEntry(legacy, want, true) {
			t.Errorf("legacy round trip of a %s entry:\n%s\nwant\n%s", e.Kind, dumpEntry(legacy), dumpEntry(want))
		}
	}
	if got, _ := DecodeEntry(EncodeEntry(ACLEntry(nilLinks))); got.ACL.Token.Policies != nil {
		t.Error("nil policy links came back empty")
	}
	if got, _ := DecodeEntry(EncodeEntry(ACLEntry(emptyLinks))); got.ACL.Token.Policies == nil {
		t.Error("empty policy links came back nil")
	}
}

// sameEntry compares entries as the state machine and the JSON output
// see them: a time by its instant and offset; with legacy set, nil
// session checks as empty (the legacy session record cannot tell them
// apart).
func sameEntry(a, b *Entry, legacy bool) bool {
	norm := func(e *Entry) Entry {
		c := *e
		if c.ACL != nil && c.ACL.Token != nil {
			cmd, tok := *c.ACL, *c.ACL.Token
			if tok.CreateTime.Location() != time.UTC {
				_, off := tok.CreateTime.Zone()
				tok.CreateTime = tok.CreateTime.In(time.FixedZone("", off))
			}
			cmd.Token = &tok
			c.ACL = &cmd
		}
		if legacy && c.Session != nil && c.Session.NodeChecks == nil {
			s := *c.Session
			s.NodeChecks = []string{}
			c.Session = &s
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestDecodeEntryRefusesCorruption(t *testing.T) {
	full := ACLEntry(filled[acl.Command](t))
	full.IdempotencyKey, full.RequestDigest, full.Time = "k", []byte("d"), time.Unix(5, 0)
	for _, e := range []*Entry{full, SessionCreateEntry(*filled[kv.Session](t)), SessionDestroyEntry("s"), ReplicaMarkEntry("n", true)} {
		b := EncodeEntry(e)
		for i := range len(b) {
			if _, err := DecodeEntry(b[:i]); err == nil {
				t.Fatalf("%s: truncated entry (%d of %d bytes) decoded", e.Kind, i, len(b))
			}
		}
		if _, err := DecodeEntry(append(b, 0)); err == nil {
			t.Fatalf("%s: trailing byte accepted", e.Kind)
		}
	}
	mark := EncodeEntry(ReplicaMarkEntry("n", true))
	bad := func(name string, b []byte) {
		t.Helper()
		_, err := DecodeEntry(b)
		if !errors.Is(err, errCorruptEntry) {
			t.Errorf("%s: %v, want a corrupt entry", name, err)
		}
	}
	bad("bool 2", append(append([]byte(nil), mark[:len(mark)-1]...), 2))
	bad("v3 KV", []byte{3, byte(KindKV), 0, 0, 0})
	bad("unknown kind", []byte{3, 99, 0, 0, 0})
	bad("kind 0", []byte{3, 0, 0, 0, 0})
	tokenAt := func(tm time.Time) []byte {
		return EncodeEntry(ACLEntry(&acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{CreateTime: tm}}))
	}
	bad("year 10000", tokenAt(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
	bad("offset of a day", tokenAt(time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("", 86400))))
	// nsec 1e9: patch the encoding of 1 s 0 ns (tag 1, sec 1 as the
	// varint 2, nsec 0) at the end of the token.
	ok := tokenAt(time.Unix(1, 0).UTC())
	i := bytes.LastIndex(ok, []byte{timeUTC, 2, 0})
	patched := append(append(append([]byte(nil), ok[:i+2]...), 0x80, 0x94, 0xeb, 0xdc, 0x03), ok[i+3:]...)
	bad("nsec 1e9", patched)
	bad("time tag 3", append(append(append([]byte(nil), ok[:i]...), 3), ok[i+1:]...))
	if _, err := DecodeEntry(ok); err != nil {
		t.Fatalf("unpatched token: %v", err)
	}
	// Errors of the legacy forms are DecodeCommand's, unchanged.
	for _, b := range [][]byte{{}, {1}, {9}, {2, 0, 0, 0, 1, 14}} {
		_, errE := DecodeEntry(b)
		_, errC := DecodeCommand(b)
		if errE == nil || errC == nil || errE.Error() != errC.Error() {
			t.Errorf("%x: DecodeEntry %v, DecodeCommand %v", b, errE, errC)
		}
	}
}

func TestEntryValidate(t *testing.T) {
	okSession := kv.Session{ID: "s", Node: "n1", Behavior: kv.BehaviorRelease, TTL: "10s"}
	ok := []*Entry{
		KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "a"}}, IdempotencyKey: "k"}),
		SessionCreateEntry(okSession),
		SessionCreateEntry(kv.Session{Node: "n1", Behavior: kv.BehaviorDelete}), // the leader adds the ID
		SessionDestroyEntry("s"),
		ReplicaMarkEntry("n2", false),
		ACLEntry(&acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{AccessorID: "a", SecretID: "s"}}),
		ACLEntry(&acl.Command{Op: acl.OpPolicySet, Policy: &acl.Policy{ID: "p", Name: "web", Rules: `key_prefix "" { policy = "read" }`}}),
		ACLEntry(&acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "a", Policies: []acl.PolicyLink{{Name: "web"}}}}),
		ACLEntry(&acl.Command{Op: acl.OpTokenDelete, ID: "a"}),
		ACLEntry(&acl.Command{Op: acl.OpPeerSecret, ID: "x"}),
	}
	for _, e := range ok {
		if err := e.Validate(Limits{}); err != nil {
			t.Errorf("%s: %v", dumpEntry(e), err)
		}
	}
	mismatch := KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "a"}}, IdempotencyKey: "k"})
	mismatch.IdempotencyKey = "other"
	for _, c := range []struct {
		name string
		e    *Entry
		want error
	}{
		{"no kind", &Entry{}, kv.ErrInvalid},
		{"kv without command", &Entry{Kind: KindKV}, kv.ErrInvalid},
		{"kv with an internal verb", KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy, Session: "s"}}}), kv.ErrInvalid},
		{"kv with an ACL verb", KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbACL}}}), kv.ErrInvalid},
		{"kv value too large", KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "a", Value: make([]byte, 11)}}}), kv.ErrTooLarge},
		{"kv key reused", mismatch, kv.ErrInvalid},
		{"long idempotency key", &Entry{Kind: KindSessionDestroy, SessionID: "s", IdempotencyKey: strings.Repeat("k", kv.MaxIdempotencyKeySize+1)}, kv.ErrInvalid},
		{"session without body", &Entry{Kind: KindSessionCreate}, kv.ErrInvalid},
		{"session without node", SessionCreateEntry(kv.Session{Behavior: kv.BehaviorRelease}), kv.ErrSession},
		{"session with a bad behaviour", SessionCreateEntry(kv.Session{Node: "n", Behavior: "x"}), kv.ErrSession},
		{"session TTL too short", SessionCreateEntry(kv.Session{Node: "n", Behavior: kv.BehaviorRelease, TTL: "1ms"}), kv.ErrSession},
		{"destroy without ID", SessionDestroyEntry(""), kv.ErrInvalid},
		{"mark without server", ReplicaMarkEntry("", true), kv.ErrInvalid},
		{"mark without body", &Entry{Kind: KindReplicaMark}, kv.ErrInvalid},
		{"ACL without body", &Entry{Kind: KindACL}, kv.ErrInvalid},
		{"ACL unknown op", ACLEntry(&acl.Command{Op: "nope"}), nil},                                                            // the state machine refuses it, in its own words
		{"ACL bootstrap without secret", ACLEntry(&acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{AccessorID: "a"}}), nil}, // the state machine refuses it, in its own words
		{"ACL policy without ID", ACLEntry(&acl.Command{Op: acl.OpPolicySet, Policy: &acl.Policy{Name: "web"}}), nil},          // the state machine refuses it, in its own words
		{"ACL policy bad rules", ACLEntry(&acl.Command{Op: acl.OpPolicySet, Policy: &acl.Policy{ID: "p", Name: "web", Rules: "key_prefx {"}}), kv.ErrInvalid},
		{"ACL link to nothing", ACLEntry(&acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "a", Policies: []acl.PolicyLink{{}}}}), nil}, // the state machine refuses it, in its own words
		{"ACL delete without ID", ACLEntry(&acl.Command{Op: acl.OpTokenDelete}), nil},                                                                // the state machine refuses it, in its own words
		{"ACL time JSON cannot carry", ACLEntry(&acl.Command{Op: acl.OpTokenSet, Token: &acl.Token{AccessorID: "a", CreateTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}), kv.ErrInvalid},
		{"unparsed legacy body", &Entry{Kind: KindACL, ACL: &acl.Command{Op: acl.OpPeerSecret, ID: "x"}, Unparsed: &LegacyBody{}}, kv.ErrInvalid},
	} {
		if err := c.e.Validate(Limits{MaxValueBytes: 10}); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzDecodeEntry: DecodeEntry never panics; what it decodes encodes back
// to the same entry (v3), or to one that is stable after a pass (legacy,
// which cannot tell a few things apart); and, where both forms carry the
// same entry, the state machine applies them alike.
func FuzzDecodeEntry(f *testing.F) {
	for _, e := range goldenEntries() {
		f.Add(EncodeEntry(e))
		f.Add(EncodeLegacyEntry(e))
	}
	f.Add([]byte{})
	f.Add([]byte{3})
	f.Add(EncodeEntry(ACLEntry(filled[acl.Command](&testing.T{}))))
	f.Add(EncodeEntry(SessionCreateEntry(*filled[kv.Session](&testing.T{}))))

	a, b := mustOpen(f, f.TempDir()), mustOpen(f, f.TempDir())
	var index uint64
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEntry(data)
		if err != nil {
			return
		}
		_ = e.Validate(Limits{})
		v3 := EncodeEntry(e)
		again, err := DecodeEntry(v3)
		if err != nil {
			t.Fatalf("EncodeEntry wrote what DecodeEntry refuses: %v\n%s", err, dumpEntry(e))
		}
		if !sameEntry(again, e, false) {
			t.Fatalf("decode → encode → decode changed the entry:\n%s\nvs\n%s", dumpEntry(again), dumpEntry(e))
		}
		if !bytes.Equal(EncodeEntry(again), v3) {
			t.Fatalf("encoding is not stable: %x vs %x", EncodeEntry(again), v3)
		}
		legacy, err := DecodeEntry(EncodeLegacyEntry(e))
		if err != nil {
			t.Fatalf("EncodeLegacyEntry wrote what DecodeEntry refuses: %v\n%s", err, dumpEntry(e))
		}
		if twice, err := DecodeEntry(EncodeLegacyEntry(legacy)); err != nil || !sameEntry(twice, legacy, false) {
			t.Fatalf("the legacy form is not stable: %v\n%s\nvs\n%s", err, dumpEntry(legacy), dumpEntry(twice))
		}
		if !sameEntry(legacy, e, true) {
			return // the legacy form cannot carry this one (JSON and invalid UTF-8)
		}
		index++
		ra := a.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: v3})
		rb := b.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodeLegacyEntry(e)})
		if fmt.Sprintf("%+v", ra) != fmt.Sprintf("%+v", rb) {
			t.Fatalf("v3 and legacy forms answered differently: %+v vs %+v", ra, rb)
		}
		var sa, sb bytes.Buffer
		if _, err := a.WriteSnapshot(&sa); err != nil {
			t.Fatal(err)
		}
		if _, err := b.WriteSnapshot(&sb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(withoutLogVersion(t, sa.Bytes()), withoutLogVersion(t, sb.Bytes())) {
			t.Fatalf("v3 and legacy forms left different states after entry %d:\n%s", index, dumpEntry(e))
		}
	})
}
