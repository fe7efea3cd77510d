package logstore

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Both kinds store and return logs and stable values, and survive a
// reopen; a data dir keeps the kind it holds.
func TestKindsAndChoice(t *testing.T) {
	for _, kind := range []Kind{WAL, BoltDB} {
		dir := t.TempDir()
		if k, err := Choose(dir, ""); err != nil || k != Default {
			t.Fatalf("a new data dir: %v %v", k, err)
		}
		s, err := Open(dir, kind, hclog.NewNullLogger(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		logs := []*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}, {Index: 2, Term: 1, Data: []byte("b")}}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		if k, err := Choose(dir, ""); err != nil || k != kind {
			t.Fatalf("%s: a data dir holding it chose %q (%v)", kind, k, err)
		}
		other := map[Kind]Kind{WAL: BoltDB, BoltDB: WAL}[kind]
		if _, err := Choose(dir, other); !errors.Is(err, ErrOtherKind) {
			t.Fatalf("%s: asking for %s: %v", kind, other, err)
		}
		s, err = Open(dir, kind, hclog.NewNullLogger(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		var l raft.Log
		if err := s.GetLog(2, &l); err != nil || string(l.Data) != "b" {
			t.Fatalf("%s: log 2 after reopen: %+v %v", kind, l, err)
		}
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("%s: stable value after reopen: %d %v", kind, v, err)
		}
		if last, _ := s.LastIndex(); last != 2 {
			t.Fatalf("%s: last index %d", kind, last)
		}
		s.Close()
	}
	if _, err := ParseKind("rocksdb"); err == nil {
		t.Fatal("an unknown kind parsed")
	}
}
