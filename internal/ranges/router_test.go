package ranges

import (
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// view3 is a node's view of three ranges: ["", "m/"), ["m/", "t/"), ["t/", ∞).
func view3() []local {
	return []local{
		{d: rangemap.Descriptor{ID: 0, End: "m/"}},
		{d: rangemap.Descriptor{ID: 4, Start: "m/", End: "t/"}},
		{d: rangemap.Descriptor{ID: 9, Start: "t/"}},
	}
}

func ids(ls []local) []uint64 {
	var out []uint64
	for _, l := range ls {
		out = append(out, l.d.ID)
	}
	return out
}

func TestOfPrefixFindsTheRangesAndWhetherTheyCoverIt(t *testing.T) {
	full := view3()
	for _, c := range []struct {
		prefix   string
		want     []uint64
		complete bool
	}{
		{"", []uint64{0, 4, 9}, true},
		{"a/", []uint64{0}, true},
		{"m", []uint64{0, 4}, true},
		{"m/", []uint64{4}, true},
		{"s", []uint64{4}, true},
		{"t", []uint64{4, 9}, true},
		{"zz", []uint64{9}, true},
	} {
		got, complete := ofPrefix(full, c.prefix)
		if complete != c.complete || len(got) != len(c.want) || (len(got) > 0 && !equal(ids(got), c.want)) {
			t.Errorf("ofPrefix(%q) = %v, %v; want %v, %v", c.prefix, ids(got), complete, c.want, c.complete)
		}
	}
	// The new range of a split has not started here yet: its keys are not
	// covered, and a listing over them must wait.
	holed := []local{full[0], full[2]}
	for prefix, want := range map[string]bool{"": false, "a/": true, "n/": false, "m": false, "u/": true} {
		if _, complete := ofPrefix(holed, prefix); complete != want {
			t.Errorf("with a hole at [m/, t/): ofPrefix(%q) complete = %v, want %v", prefix, complete, want)
		}
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPlaceOpsKeepsATxnInOneRange(t *testing.T) {
	v := view3()
	op := func(verb kv.Verb, key string) kv.Op { return kv.Op{Verb: verb, Key: key} }
	at, refusal, routed := placeOps(v, &kv.Command{Ops: []kv.Op{op(kv.VerbSet, "m/a"), op(kv.VerbCAS, "n/b"), op(kv.VerbGetTree, "p/")}})
	if !routed || refusal != nil || at.d.ID != 4 {
		t.Fatalf("a txn within range 4: %v, %+v, %v", at.d.ID, refusal, routed)
	}
	_, refusal, routed = placeOps(v, &kv.Command{Ops: []kv.Op{op(kv.VerbSet, "a/1"), op(kv.VerbSet, "b/1"), op(kv.VerbSet, "z/1")}})
	if !routed || refusal == nil || refusal.OK || len(refusal.Errors) != 1 || refusal.Errors[0].OpIndex != 2 ||
		!strings.Contains(refusal.Errors[0].What, "txn spans ranges 0 and 9") {
		t.Fatalf("a txn over ranges 0 and 9: %+v", refusal)
	}
	_, refusal, _ = placeOps(v, &kv.Command{Ops: []kv.Op{op(kv.VerbGetTree, "")}})
	if refusal == nil || refusal.Errors[0].OpIndex != 0 || !strings.Contains(refusal.Errors[0].What, "txn spans ranges 0 and 4") {
		t.Fatalf("a get-tree over every range in a txn: %+v", refusal)
	}
	if _, _, routed := placeOps([]local{v[0], v[2]}, &kv.Command{Ops: []kv.Op{op(kv.VerbSet, "n/x")}}); routed {
		t.Fatal("a key in a range this node has not started was routed")
	}
}
