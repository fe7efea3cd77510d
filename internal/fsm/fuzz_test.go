package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

// FuzzApply feeds arbitrary bytes to the state machine as a log entry. It
// must never panic, and two FSMs fed the same entries must give the same
// answers and hold the same state.
func FuzzApply(f *testing.F) {
	for _, c := range []kv.Command{
		{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "a", Value: []byte("1")}}},
		{Ops: []kv.Op{{Verb: kv.VerbReadReplica, Key: "n2", Value: []byte("1")}}},
		{Ops: []kv.Op{{Verb: kv.VerbCAS, Key: "a", Value: []byte("2"), Index: 1}}, IdempotencyKey: "k"},
		{Ops: []kv.Op{{Verb: kv.VerbDeleteTree, Key: ""}}, Time: time.Unix(1_800_000_000, 0)},
		{Ops: []kv.Op{{Verb: kv.VerbGetTree, Key: "a"}, {Verb: kv.VerbCheckNotExists, Key: "b"}, {Verb: kv.VerbDeleteCAS, Key: "a", Index: 3}}},
	} {
		f.Add(EncodeCommand(&c))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 1, 99})

	// One pair for the whole run: opening Badger per input would be slow.
	a, b := mustOpen(f, f.TempDir()), mustOpen(f, f.TempDir())
	var index uint64
	f.Fuzz(func(t *testing.T, data []byte) {
		index++
		l := &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
		ra, rb := a.Apply(l), b.Apply(l)
		if fmt.Sprintf("%+v", ra) != fmt.Sprintf("%+v", rb) {
			t.Fatalf("same entry, different answers: %+v vs %+v", ra, rb)
		}
		// Decoding accepts non-minimal varints, so the bytes may differ;
		// what the command means must survive a round trip.
		if c, err := DecodeCommand(data); err == nil {
			again, err := DecodeCommand(EncodeCommand(c))
			if err != nil || fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", c) {
				t.Fatalf("decode → encode → decode changed the command: %+v vs %+v (%v)", c, again, err)
			}
		}
		ea, ia, erra := a.List("")
		eb, ib, errb := b.List("")
		if erra != nil || errb != nil || ia != ib || fmt.Sprint(ea) != fmt.Sprint(eb) {
			t.Fatalf("states diverged after entry %d", index)
		}
		if a.AppliedIndex() != index {
			t.Fatalf("applied index %d after entry %d", a.AppliedIndex(), index)
		}
	})
}
