package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The server's answers are these shapes encoded: every field present, in
// Consul's order. A tag such as omitempty would change them, so the
// encodings are pinned here.
func TestShapesEncodeAsConsul(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{DirEntry{Key: "k"}, `{"LockIndex":0,"Key":"k","Flags":0,"Value":null,"CreateIndex":0,"ModifyIndex":0,"Session":""}`},
		{TxnResponse{Errors: []TxnError{{OpIndex: 1, What: "missing session"}}}, `{"Results":null,"Errors":[{"OpIndex":1,"What":"missing session"}]}`},
		{TxnResponse{Results: []TxnResult{{KV: DirEntry{Key: "k", Value: []byte("v")}}}},
			`{"Results":[{"KV":{"LockIndex":0,"Key":"k","Flags":0,"Value":"dg==","CreateIndex":0,"ModifyIndex":0,"Session":""}}],"Errors":null}`},
		// A client's operation leaves out what it does not set.
		{[]TxnOp{{KV: &KVTxnOp{Verb: "get", Key: "k"}}}, `[{"KV":{"Verb":"get","Key":"k"}}]`},
		{ACLPolicy{ID: "p", Name: "n"}, `{"ID":"p","Name":"n","Description":"","Rules":"","CreateIndex":0,"ModifyIndex":0}`},
		{ACLPolicyListEntry{ID: "p", Name: "n"}, `{"ID":"p","Name":"n","Description":"","Datacenters":null,"CreateIndex":0,"ModifyIndex":0}`},
		{ACLToken{AccessorID: "a", SecretID: "s", Policies: []ACLLink{{ID: "p", Name: "n"}}, CreateTime: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
			`{"AccessorID":"a","SecretID":"s","Description":"","Policies":[{"ID":"p","Name":"n"}],"Local":false,"CreateTime":"2024-01-02T03:04:05Z","CreateIndex":0,"ModifyIndex":0}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%T encodes as\n%s, want\n%s (%v)", c.v, b, c.want, err)
		}
	}
}

func TestDirEntryRoundTrip(t *testing.T) {
	e := kv.Entry{Key: "a/b", Value: []byte("v"), Flags: 3, CreateIndex: 4, ModifyIndex: 5, LockIndex: 2, Session: "s"}
	b, err := json.Marshal(FromEntry(e))
	if err != nil {
		t.Fatal(err)
	}
	var d DirEntry
	if err := json.Unmarshal(b, &d); err != nil || !reflect.DeepEqual(d.Entry(), e) {
		t.Fatalf("entry %s → %+v, %v", b, d.Entry(), err)
	}
	if b, _ := json.Marshal(FromEntry(kv.Entry{Key: "empty", Value: []byte{}})); !strings.Contains(string(b), `"Value":null`) {
		t.Fatalf("an empty value must be null: %s", b)
	}
}

// A transaction's answer decodes back into what was encoded, its entries
// into the store's.
func TestTxnResponseRoundTrip(t *testing.T) {
	in := TxnResponse{Results: []TxnResult{{KV: FromEntry(kv.Entry{Key: "k", Value: []byte("v"), ModifyIndex: 7})}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out TxnResponse
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(out, in) || out.Results[0].KV.Entry().ModifyIndex != 7 {
		t.Fatalf("%s → %+v, %v", b, out, err)
	}
}

// The ranges' shapes are raftkv's own, pinned as Consul's are: every field
// present (an empty End is the end of the keyspace, not a missing one),
// and an answer decodes back into what was encoded.
func TestRangeShapes(t *testing.T) {
	split := RangeSplit{
		Left: Range{ID: 1, Start: "", End: "m/", Generation: 3, Replicas: []RangeReplica{{Node: "n1", Voter: true}, {Node: "n3"}},
			Leader: "n1", Keys: 10, Bytes: 2048, WritesPerSec: 12.5},
		Right: Range{ID: 7, Start: "m/", Generation: 3, Replicas: []RangeReplica{{Node: "n1", Voter: true}, {Node: "n3"}}},
	}
	b, err := json.Marshal(split)
	want := `{"Left":{"ID":1,"Start":"","End":"m/","Generation":3,"Replicas":[{"Node":"n1","Voter":true},{"Node":"n3","Voter":false}],"Leader":"n1","Keys":10,"Bytes":2048,"WritesPerSec":12.5,"FromMeta":false},` +
		`"Right":{"ID":7,"Start":"m/","End":"","Generation":3,"Replicas":[{"Node":"n1","Voter":true},{"Node":"n3","Voter":false}],"Leader":"","Keys":0,"Bytes":0,"WritesPerSec":0,"FromMeta":false}}`
	if err != nil || string(b) != want {
		t.Fatalf("RangeSplit encodes as\n%s, want\n%s (%v)", b, want, err)
	}
	var out RangeSplit
	if err := json.Unmarshal(b, &out); err != nil || !reflect.DeepEqual(out, split) {
		t.Fatalf("%s → %+v, %v", b, out, err)
	}
}

// A route survives its header form whatever its keys hold, and a header
// that is not one (no leader, bounds the wrong way, not numbers) is
// refused.
func TestRouteHeaderRoundTrip(t *testing.T) {
	for _, r := range []Route{
		{Range: 7, Generation: 3, Start: "a b&c=d/", End: "ü/%2F", Leader: "10.0.0.1:7001"},
		{Range: 0, Generation: 0, Leader: "[::1]:7001"},
	} {
		if got, ok := ParseRoute(r.Header()); !ok || got != r {
			t.Errorf("%+v came back as %+v (%v)", r, got, ok)
		}
	}
	for _, h := range []string{"", "range=1&gen=1&leader=", "range=x&gen=1&leader=a:1", "range=1&gen=1&start=b&end=a&leader=a:1", "%zz"} {
		if r, ok := ParseRoute(h); ok {
			t.Errorf("%q parsed as %+v", h, r)
		}
	}
	r := Route{Start: "b/", End: "d/"}
	for key, want := range map[string]bool{"a": false, "b/": true, "c": true, "d/": false, "e": false} {
		if r.Contains(key) != want {
			t.Errorf("[b/, d/) contains %q: %v", key, !want)
		}
	}
}
