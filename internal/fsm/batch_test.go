package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

var t0 = time.Unix(1_800_000_000, 0)

func timed(index uint64, at time.Duration, idemKey string, ops ...kv.Op) *raft.Log {
	c := &kv.Command{Ops: ops, Time: t0.Add(at), IdempotencyKey: idemKey}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodeCommand(c)}
}

func TestQueryIndexes(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(10, 0, "", set("a/1", "x")))
	f.Apply(timed(11, 0, "", set("a/2", "x")))
	f.Apply(timed(12, 0, "", set("b", "x")))
	_, idx, _ := f.List("a/")
	if idx != 11 {
		t.Fatalf("list index %d, want 11 (newest entry under a/)", idx)
	}
	f.Apply(timed(13, 0, "", kv.Op{Verb: kv.VerbDelete, Key: "a/2"}))
	if _, idx, _ = f.List("a/"); idx != 13 {
		t.Fatalf("list index after a delete under the prefix: %d, want 13", idx)
	}
	if _, idx, _ = f.Keys("a/", "/"); idx != 13 {
		t.Fatalf("keys index: %d, want 13", idx)
	}
	if _, idx, err := f.Get("a/2"); !errors.Is(err, kv.ErrNotFound) || idx != 13 {
		t.Fatalf("missing key index %d (%v), want its tombstone 13", idx, err)
	}
	f.Apply(timed(14, 0, "", set("b", "y")))
	if _, idx, _ = f.List("a/"); idx != 13 {
		t.Fatalf("a write outside the prefix moved its index to %d", idx)
	}
	if _, idx, _ = f.Get("never"); idx != 1 {
		t.Fatalf("never-written key index %d, want 1", idx)
	}
}

func TestTombstonesReapedWithoutIndexGoingBack(t *testing.T) {
	defer func(old time.Duration) { tombstoneTTL = old }(tombstoneTTL)
	tombstoneTTL = time.Minute
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(1, 0, "", set("p/a", "x")))
	f.Apply(timed(2, 0, "", kv.Op{Verb: kv.VerbDeleteTree, Key: "p/"}))
	_, before, _ := f.List("p/")
	// A write two minutes later reaps the tombstone...
	f.Apply(timed(3, 2*time.Minute, "", set("q", "x")))
	err := f.view(func(txn *badger.Txn) error {
		v, err := readUint(txn, prefixed(tombPrefix, "p/a"))
		if v != 0 {
			return fmt.Errorf("tombstone still there (%d)", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// ...and the prefix's index does not go backwards.
	if _, after, _ := f.List("p/"); after < before {
		t.Fatalf("index went back from %d to %d after reaping", before, after)
	}
}

func TestIdempotentCommandAppliesOnce(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	first := mustResult(t, f.Apply(timed(1, 0, "req-1", kv.Op{Verb: kv.VerbCAS, Key: "k", Value: []byte("v1")})))
	f.Apply(timed(2, time.Second, "", set("k", "other")))
	// The same keyed write again: the first answer, nothing applied.
	again := mustResult(t, f.Apply(timed(3, 2*time.Second, "req-1", kv.Op{Verb: kv.VerbCAS, Key: "k", Value: []byte("v1")})))
	if again.Index != first.Index || again.OK != first.OK || !again.OK {
		t.Fatalf("replay answered %+v, first answer was %+v", again, first)
	}
	if got := string(mustGet(t, f, "k").Value); got != "other" {
		t.Fatalf("replay changed the value to %q", got)
	}
	// The table is replicated state: it survives a snapshot.
	sink := &memSink{}
	if _, err := f.WriteSnapshot(sink); err != nil {
		t.Fatal(err)
	}
	g := mustOpen(t, t.TempDir())
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if r := mustResult(t, g.Apply(timed(4, 3*time.Second, "req-1", set("k", "v9")))); r.Index != first.Index {
		t.Fatalf("after restore the replay answered %+v", r)
	}
	if got := string(mustGet(t, g, "k").Value); got != "other" {
		t.Fatalf("after restore the replay applied: %q", got)
	}
}

func TestIdempotencyExpiresByAgeAndSize(t *testing.T) {
	defer func(ttl time.Duration, cap int64) { idempotencyTTL, maxIdempotencyKeys = ttl, cap }(idempotencyTTL, maxIdempotencyKeys)
	idempotencyTTL, maxIdempotencyKeys = 10*time.Minute, 3
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(1, 0, "old", set("k", "1")))
	// Nine minutes later the key still protects...
	if r := mustResult(t, f.Apply(timed(2, 9*time.Minute, "old", set("k", "2")))); r.Index != 1 {
		t.Fatalf("key expired early: %+v", r)
	}
	// ...eleven minutes later it has expired and the write applies.
	f.Apply(timed(3, 11*time.Minute, "", set("x", "tick")))
	if r := mustResult(t, f.Apply(timed(4, 11*time.Minute, "old", set("k", "3")))); r.Index != 4 {
		t.Fatalf("expired key still deduplicated: %+v", r)
	}
	// Size cap: with more than 3 keys the oldest are dropped.
	for i := range 5 {
		f.Apply(timed(uint64(10+i), 12*time.Minute, fmt.Sprintf("s%d", i), set("k", "v")))
	}
	f.Apply(timed(20, 12*time.Minute, "", set("x", "tick")))
	if f.idemCount > maxIdempotencyKeys {
		t.Fatalf("%d idempotency keys kept, cap %d", f.idemCount, maxIdempotencyKeys)
	}
	if r := mustResult(t, f.Apply(timed(21, 12*time.Minute, "s4", set("k", "v")))); r.Index != 14 {
		t.Fatalf("newest key evicted: %+v", r)
	}
}

type recordingNotifier struct {
	mu       sync.Mutex
	keys     []string
	all      int
	sessions int
}

func (r *recordingNotifier) SessionsChanged() { r.mu.Lock(); r.sessions++; r.mu.Unlock() }

func (r *recordingNotifier) KeysChanged(keys []string) {
	r.mu.Lock()
	r.keys = append(r.keys, keys...)
	r.mu.Unlock()
}
func (r *recordingNotifier) AllChanged() { r.mu.Lock(); r.all++; r.mu.Unlock() }

func TestChangeNotifications(t *testing.T) {
	n := &recordingNotifier{}
	f, err := Open(t.TempDir(), Options{Small: true, Notify: n})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.ApplyBatch([]*raft.Log{
		timed(1, 0, "", set("a", "1"), set("b", "1")),
		timed(2, 0, "", kv.Op{Verb: kv.VerbCAS, Key: "a", Index: 99}), // fails: no change
		timed(3, 0, "", kv.Op{Verb: kv.VerbDeleteTree, Key: ""}),
	})
	if fmt.Sprint(n.keys) != "[a b a b]" {
		t.Fatalf("notified %v", n.keys)
	}
	sink := &memSink{}
	f.WriteSnapshot(sink)
	f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes())))
	if n.all != 1 {
		t.Fatalf("restore notified %d times", n.all)
	}
}
