package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

var threeReplicas = []rangemap.Replica{{Node: "n1", Voter: true}, {Node: "n2", Voter: true}, {Node: "n3", Voter: true}}

func splitLog(index uint64, at time.Duration, key string, newID uint64) *raft.Log {
	e := SplitEntry(Split{Key: key, NewID: newID, Replicas: threeReplicas})
	e.Time = t0.Add(at)
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(e)}
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, Options{Small: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openRange(t *testing.T, s *Store, id uint64) *FSM {
	t.Helper()
	f, err := s.Range(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func keysOf(t *testing.T, f *FSM, prefix string) string {
	t.Helper()
	keys, _, err := f.Keys(prefix, "")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(keys, " ")
}

// A split moves no key and loses none: the left half answers for the keys
// before the split key, the new range for the rest; each refuses the
// other's keys without doing anything; indexes only grow, across the split
// and a restart; and a keyed write applied before the split is answered
// again, not applied again, by the range that holds its key after it.
func TestSplitLeavesEveryKeyInPlace(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	r0 := openRange(t, s, 0)
	var heard []string
	r0.OnSplit(func(l, r rangemap.Descriptor) { heard = append(heard, l.String()+" | "+r.String()) })

	logs := []*raft.Log{
		timed(1, 0, "", set("a/1", "a")),
		timed(2, time.Second, "", set("m/1", "m")),
		timed(3, 2*time.Second, "w-z", set("z/1", "z")), // a keyed write, before the split
		timed(4, 3*time.Second, "", set("z/gone", "x")),
		timed(5, 4*time.Second, "", kv.Op{Verb: kv.VerbDelete, Key: "z/gone"}),
	}
	for _, r := range r0.ApplyBatch(logs) {
		mustResult(t, r)
	}
	before := mustGet(t, r0, "z/1")
	res := mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(6, 5*time.Second, "m/", 7)})[0])
	if !res.OK || res.Index != 6 {
		t.Fatalf("split: %+v", res)
	}
	if len(heard) != 1 || !strings.Contains(heard[0], `range 0 ["", "m/") gen 1 | range 7 ["m/", ∞) gen 1`) {
		t.Fatalf("split hook heard %q", heard)
	}

	r7 := openRange(t, s, 7)
	if got := keysOf(t, r0, ""); got != "a/1" {
		t.Fatalf("range 0 lists %q", got)
	}
	if got := keysOf(t, r7, ""); got != "m/1 z/1" {
		t.Fatalf("range 7 lists %q", got)
	}
	if _, _, err := r0.Get("z/1"); !errors.Is(err, kv.ErrRangeMoved) {
		t.Fatalf("range 0 reading a key of range 7: %v", err)
	}
	if e := mustGet(t, r7, "z/1"); e.ModifyIndex != before.ModifyIndex || string(e.Value) != "z" {
		t.Fatalf("z/1 in range 7: %+v, was %+v", e, before)
	}
	// A write routed to range 0 before the split, applied after: refused,
	// nothing done.
	if res := r0.ApplyBatch([]*raft.Log{timed(7, 6*time.Second, "", set("z/1", "late"))})[0]; !errors.Is(res.(error), kv.ErrRangeMoved) {
		t.Fatalf("range 0 applying a write of range 7's: %v", res)
	}
	if string(mustGet(t, r7, "z/1").Value) != "z" {
		t.Fatal("a refused write changed the key")
	}
	// Range 7's own log starts at 1; its indexes continue above the split.
	res = mustResult(t, r7.ApplyBatch([]*raft.Log{timed(2, 7*time.Second, "", set("z/1", "again"))})[0])
	if e := mustGet(t, r7, "z/1"); e.ModifyIndex <= 6 || e.ModifyIndex != res.Index || e.CreateIndex != before.CreateIndex {
		t.Fatalf("z/1 written in range 7: %+v (result index %d)", e, res.Index)
	}
	if res.Index >= 1<<53 {
		t.Fatalf("index %d is not below 2^53", res.Index)
	}
	// The keyed write again (a client's retry): its first answer, and it is
	// not applied again.
	retry := mustResult(t, r7.ApplyBatch([]*raft.Log{timed(3, 8*time.Second, "w-z", set("z/1", "z"))})[0])
	if retry.Index != 3 || string(mustGet(t, r7, "z/1").Value) != "again" {
		t.Fatalf("retry of a write applied before the split: %+v, value %q", retry, mustGet(t, r7, "z/1").Value)
	}
	// Deleted keys keep their tombstones where their key went: the list's
	// index is at least the delete's.
	if _, idx, _ := r7.List("z/"); idx < 5 {
		t.Fatalf("range 7's index for z/ is %d, below the delete at 5", idx)
	}
	// Range 0 counts on from the split too.
	res0 := mustResult(t, r0.ApplyBatch([]*raft.Log{timed(8, 9*time.Second, "", set("a/2", "b"))})[0])
	if res0.Index <= 6 {
		t.Fatalf("range 0 after the split wrote at index %d", res0.Index)
	}
	last7 := r7.LastIndex()

	// After a restart both ranges are there, with their spans and counts.
	r0.Close()
	r7.Close()
	s.Close()
	s2 := openStore(t, dir)
	ranges, err := s2.Ranges()
	if err != nil || len(ranges) != 2 || ranges[0].End != "m/" || ranges[1].ID != 7 || ranges[1].Start != "m/" {
		t.Fatalf("ranges after restart: %v, %v", ranges, err)
	}
	r7 = openRange(t, s2, 7)
	if r7.LastIndex() != last7 {
		t.Fatalf("range 7's last index %d after restart, was %d", r7.LastIndex(), last7)
	}
	res = mustResult(t, r7.ApplyBatch([]*raft.Log{timed(4, 9*time.Second, "", set("m/2", "x"))})[0])
	if res.Index <= last7 {
		t.Fatalf("range 7 after restart wrote at index %d, not above %d", res.Index, last7)
	}
}

func TestSplitRefusals(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	sess := kv.Op{Verb: kv.VerbSessionCreate, Session: "s1", Value: EncodeSession(&kv.Session{Node: "n1", Behavior: kv.BehaviorRelease})}
	for _, r := range r0.ApplyBatch([]*raft.Log{
		timed(1, 0, "", sess),
		timed(2, time.Second, "", kv.Op{Verb: kv.VerbLock, Key: "q/lock", Session: "s1"}),
	}) {
		mustResult(t, r)
	}
	idx := uint64(3)
	refused := func(key string, id uint64, want string) {
		t.Helper()
		res := r0.ApplyBatch([]*raft.Log{splitLog(idx, time.Duration(idx)*time.Second, key, id)})[0]
		idx++
		if err, ok := res.(error); !ok || !strings.Contains(err.Error(), want) {
			t.Fatalf("split at %q: %v, want a refusal with %q", key, res, want)
		}
	}
	// Validate refuses these before they reach a log; the state machine
	// refuses them too.
	refused("", 5, "must end with")
	refused("q", 5, "must end with")
	refused("x/", 0, "ID of its own")
	if d := r0.Descriptor(); d.Start != "" || d.End != "" || d.Generation != 0 {
		t.Fatalf("refused splits changed the range: %s", d)
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(idx, 20*time.Second, "r/", 9)})[0])
	idx++
	refused("r/", 10, "not inside")
	refused("s/", 10, "not inside")

	// Range 9 takes locks (range 0 holds the sessions: the node that
	// proposes an acquire checks there), not sessions or ACLs; once it let
	// go of a session, it releases its keys and refuses it.
	r9 := openRange(t, s, 9)
	acquire := func(i uint64) any {
		return r9.ApplyBatch([]*raft.Log{timed(i, 30*time.Second, "", kv.Op{Verb: kv.VerbLock, Key: "r/x", Session: "s1"})})[0]
	}
	if res := mustResult(t, acquire(2)); !res.OK || res.Entries[0].Session != "s1" {
		t.Fatalf("acquire in range 9: %+v", res)
	}
	if res := r9.ApplyBatch([]*raft.Log{timed(3, 30*time.Second, "", sess)})[0]; !errors.Is(res.(error), kv.ErrInvalid) {
		t.Fatalf("range 9 created a session: %+v", res)
	}
	rel := SessionReleaseEntry(kv.Session{ID: "s1", Behavior: kv.BehaviorRelease, LockDelay: time.Second})
	rel.Time = t0.Add(31 * time.Second)
	mustResult(t, r9.ApplyBatch([]*raft.Log{{Index: 4, Type: raft.LogCommand, Data: EncodeEntry(rel)}})[0])
	if e := mustGet(t, r9, "r/x"); e.Session != "" {
		t.Fatalf("r/x after range 9 let go of s1: %+v", e)
	}
	if res := mustResult(t, acquire(5)); res.OK || !res.Errors[0].InvalidSession {
		t.Fatalf("acquire by a session range 9 let go of: %+v", res)
	}
	if res := r0.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: EncodeEntry(rel)}})[0]; !errors.Is(res.(error), kv.ErrInvalid) {
		t.Fatalf("range 0 applied a session release: %+v", res)
	}

	for _, sp := range []Split{{Key: "a", NewID: 2, Replicas: threeReplicas}, {Key: "a/", NewID: 0, Replicas: threeReplicas},
		{Key: "a/", NewID: 2}, {Key: "a/", NewID: 2, Replicas: []rangemap.Replica{{Node: "n1"}}},
		{Key: "a/", NewID: 2, Replicas: []rangemap.Replica{{Node: "n1", Voter: true}, {Node: "n1"}}}} {
		if err := SplitEntry(sp).Validate(Limits{}); !errors.Is(err, kv.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v", sp, err)
		}
	}
}

// A range's snapshot holds its keys and its own state only, and restoring
// it gives that back without touching the other range.
func TestRangeSnapshotRestore(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	for _, r := range r0.ApplyBatch([]*raft.Log{
		timed(1, 0, "", set("a/1", "a")), timed(2, 0, "k1", set("m/1", "m")), timed(3, 0, "", set("z/1", "z")),
		splitLog(4, time.Second, "m/", 7),
	}) {
		mustResult(t, r)
	}
	r7 := openRange(t, s, 7)
	mustResult(t, r7.ApplyBatch([]*raft.Log{timed(2, 2*time.Second, "", set("z/2", "zz"))})[0])

	var snap7, snap0 bytes.Buffer
	if _, err := r7.WriteSnapshot(&snap7); err != nil {
		t.Fatal(err)
	}
	if _, err := r0.WriteSnapshot(&snap0); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(snap0.Bytes(), []byte("z/1")) || !bytes.Contains(snap7.Bytes(), []byte("z/1")) || bytes.Contains(snap7.Bytes(), []byte("a/1")) {
		t.Fatal("a range's snapshot holds another range's keys")
	}
	want7 := keysOf(t, r7, "")
	if err := r7.Reset(); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, r7, ""); got != "" || keysOf(t, r0, "") != "a/1" {
		t.Fatalf("after resetting range 7: range 7 %q, range 0 %q", got, keysOf(t, r0, ""))
	}
	if err := r7.Restore(nopCloser{bytes.NewReader(snap7.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, r7, ""); got != want7 || r7.AppliedIndex() != 2 || keysOf(t, r0, "") != "a/1" {
		t.Fatalf("after restoring range 7: %q (want %q), applied %d, range 0 %q", got, want7, r7.AppliedIndex(), keysOf(t, r0, ""))
	}
	if d := r7.Descriptor(); d.ID != 7 || d.Start != "m/" {
		t.Fatalf("range 7's descriptor after its restore: %s", d)
	}
	// Range 0's snapshot cannot be restored into range 7, nor the reverse.
	if err := r7.Restore(nopCloser{bytes.NewReader(snap0.Bytes())}); err == nil {
		t.Fatal("range 7 restored range 0's snapshot")
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// The split command is part of the replicated state machine: every
// batching of the same logs gives byte-identical ranges.
func TestSplitSameLogSameStateWhateverTheBatches(t *testing.T) {
	defer func(a, b time.Duration, c int64, d int) {
		tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand = a, b, c, d
	}(tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand)
	tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand = 2*time.Minute, time.Minute, 15, 3

	for seed := uint64(1); seed <= 3; seed++ {
		logs := randomLog(seed, 300)
		// Range 0's log: the random log with a split in the middle. Range
		// 7's log: writes to its keys (d1/, d2/) after the split.
		mid := len(logs) / 2
		at := 10 * time.Hour
		log0 := append(append(append([]*raft.Log(nil), logs[:mid]...), splitLog(uint64(mid+1), at, "d1/", 7)), reindex(logs[mid:], uint64(mid+2))...)
		var log7 []*raft.Log
		for i, l := range randomLog(seed+100, 200) {
			if l.Type != raft.LogCommand {
				continue
			}
			if e, _ := DecodeEntry(l.Data); e.Kind == KindKV {
				c := *e.KV
				c.Time = t0.Add(at + time.Duration(i)*time.Second)
				for j := range c.Ops {
					c.Ops[j].Key = strings.Replace(c.Ops[j].Key, "d0/", "d2/", 1)
				}
				log7 = append(log7, &raft.Log{Type: raft.LogCommand, Data: EncodeCommand(&c)})
			}
		}
		// Closes cut raft's batches in the state machine: they must not
		// change what it computes.
		for i, pos := range []int{len(log7) / 3, 2 * len(log7) / 3} {
			closeAt := clockIndex(t0.Add(at + time.Duration(50+i)*time.Hour).UnixNano()) // accepted: far ahead of every write
			log7 = append(log7[:pos], append([]*raft.Log{closeLog(0, closeAt)}, log7[pos:]...)...)
		}
		// Range 0 let go of the sessions: range 7 releases their locks and
		// refuses them afterwards.
		for _, id := range []string{"s0", "s1", "s2"} {
			e := SessionReleaseEntry(kv.Session{ID: id, Behavior: kv.BehaviorRelease, LockDelay: time.Second})
			e.Time = t0.Add(at + 100*time.Second)
			pos := len(log7) / 2
			log7 = append(log7[:pos], append([]*raft.Log{{Type: raft.LogCommand, Data: EncodeEntry(e)}}, log7[pos:]...)...)
		}
		log7 = reindex(log7, BirthIndex+1) // after the birth snapshot

		want0, want7, wantRes := applyRanges(t, log0, log7, []int{1})
		for _, what := range []string{"is not in range 0", "lock is already held", "invalid session"} {
			if !strings.Contains(wantRes, what) {
				t.Fatalf("seed %d: the logs never produced %q", seed, what)
			}
		}
		for _, sizes := range [][]int{{1000}, {7}, {2, 13, 1, 64}} {
			s0, s7, res := applyRanges(t, log0, log7, sizes)
			if res != wantRes {
				t.Fatalf("seed %d, batches %v: answers differ from one-by-one", seed, sizes)
			}
			if !bytes.Equal(s0, want0) || !bytes.Equal(s7, want7) {
				t.Fatalf("seed %d, batches %v: state differs from one-by-one", seed, sizes)
			}
		}
	}
}

func reindex(logs []*raft.Log, from uint64) []*raft.Log {
	out := make([]*raft.Log, len(logs))
	for i, l := range logs {
		c := *l
		c.Index = from + uint64(i)
		out[i] = &c
	}
	return out
}

// applyRanges applies range 0's log, then range 7's, in batches of the
// given sizes (cycled), and returns both snapshots and every answer.
func applyRanges(t *testing.T, log0, log7 []*raft.Log, sizes []int) ([]byte, []byte, string) {
	t.Helper()
	s := openStore(t, t.TempDir())
	var results bytes.Buffer
	apply := func(f *FSM, logs []*raft.Log) {
		for i, n := 0, 0; i < len(logs); n++ {
			k := min(sizes[n%len(sizes)], len(logs)-i)
			for _, r := range f.ApplyBatch(logs[i : i+k]) {
				fmt.Fprintf(&results, "%+v\n", r)
			}
			i += k
		}
	}
	r0 := openRange(t, s, 0)
	apply(r0, log0)
	r7 := openRange(t, s, 7)
	apply(r7, log7)
	var s0, s7 bytes.Buffer
	if _, err := r0.WriteSnapshot(&s0); err != nil {
		t.Fatal(err)
	}
	if _, err := r7.WriteSnapshot(&s7); err != nil {
		t.Fatal(err)
	}
	return s0.Bytes(), s7.Bytes(), results.String()
}

func TestRangeIDsAreHandedOutOnce(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	newID := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(NewRangeIDEntry())}
	}
	var got []uint64
	for _, r := range r0.ApplyBatch([]*raft.Log{newID(1), newID(2), newID(3)}) {
		got = append(got, mustResult(t, r).Index)
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("range IDs %v", got)
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(4, 0, "m/", 3)})[0])
	r3 := openRange(t, s, 3)
	if res := r3.ApplyBatch([]*raft.Log{newID(2)})[0]; !errors.Is(res.(error), kv.ErrInvalid) {
		t.Fatalf("range 3 handed out a range ID: %v", res)
	}
}

func closeLog(index uint64, at uint64) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(CloseEntry(at))}
}

// A close raises the range's floor: every later write gets more, a close
// below a write's index is refused with the floor, and the node that
// proposed it gets the range exactly as it was at the close, whatever
// came after it in the same batch.
func TestCloseRaisesTheFloorAndShowsTheRangeAtIt(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	if res := mustResult(t, r0.ApplyBatch([]*raft.Log{closeLog(1, 1<<50)})[0]); res.OK {
		t.Fatal("a range before its first split (counting raft indexes) accepted a close")
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(2, 0, "m/", 7)})[0])
	w := mustResult(t, r0.ApplyBatch([]*raft.Log{timed(3, time.Second, "", set("a/1", "x"))})[0])
	at := w.Index + 1000
	views, cancel := r0.AwaitAt(at)
	defer cancel()
	out := r0.ApplyBatch([]*raft.Log{
		closeLog(4, at),
		timed(5, 2*time.Second, "", set("a/2", "after")), // same raft batch, after the close
	})
	if res := mustResult(t, out[0]); !res.OK || res.Index != at {
		t.Fatalf("close: %+v", res)
	}
	after := mustResult(t, out[1])
	if after.Index <= at {
		t.Fatalf("a write after a close at %d got index %d", at, after.Index)
	}
	var v *View
	select {
	case v = <-views:
	default:
		t.Fatal("no view of the close")
	}
	defer v.Discard()
	got, err := v.Read(kv.Query{Kind: kv.ReadKeys, Key: "a/"})
	if err != nil || strings.Join(got.Keys, " ") != "a/1" || got.Index > at {
		t.Fatalf("the view at the close: %+v, %v", got, err)
	}
	if keysOf(t, r0, "a/") != "a/1 a/2" {
		t.Fatal("the write after the close is missing from the range")
	}
	if res := mustResult(t, r0.ApplyBatch([]*raft.Log{closeLog(6, at)})[0]); res.OK || res.Index != after.Index {
		t.Fatalf("a close below the last write's index: %+v, want refused with floor %d", res, after.Index)
	}
}

// Once range 0 has split, invalidating a session leaves its release in
// the other ranges pending until range 0 hears it is done; before the
// first split there is nothing to release elsewhere, and nothing is
// recorded.
func TestPendingReleases(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	create := func(i uint64, id string) *raft.Log {
		return timed(i, 0, "", kv.Op{Verb: kv.VerbSessionCreate, Session: id, Value: EncodeSession(&kv.Session{Node: "n1", Behavior: kv.BehaviorDelete, LockDelay: 7 * time.Second})})
	}
	destroy := func(i uint64, id string) *raft.Log {
		return timed(i, time.Second, "", kv.Op{Verb: kv.VerbSessionDestroy, Session: id})
	}
	for _, r := range r0.ApplyBatch([]*raft.Log{create(1, "before"), destroy(2, "before"), create(3, "after"), splitLog(4, 0, "m/", 2), destroy(5, "after")}) {
		mustResult(t, r)
	}
	pending, err := r0.PendingReleases()
	if err != nil || len(pending) != 1 || pending[0].ID != "after" || pending[0].Behavior != kv.BehaviorDelete || pending[0].LockDelay != 7*time.Second {
		t.Fatalf("pending releases: %+v, %v", pending, err)
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{{Index: 6, Type: raft.LogCommand, Data: EncodeEntry(ReleaseDoneEntry("after"))}})[0])
	if pending, err := r0.PendingReleases(); err != nil || len(pending) != 0 {
		t.Fatalf("pending releases after done: %+v, %v", pending, err)
	}
}

// A split that moves more bookkeeping than fits its batch's transaction
// (a range under keyed writes: an idempotency record per write of the
// last ten minutes) is applied in pieces, with the same outcome: every
// record is in the range that holds its key, a retried keyed write is
// answered, not applied again, and the replicas' states are identical.
func TestSplitWithMuchBookkeeping(t *testing.T) {
	var logs []*raft.Log
	n := maxSplitMoves + 500
	for i := range n {
		logs = append(logs, timed(uint64(len(logs)+1), 0, fmt.Sprintf("key-%d", i), set(fmt.Sprintf("z/%05d", i), "x")))
	}
	logs = append(logs, timed(uint64(len(logs)+1), time.Second, "", kv.Op{Verb: kv.VerbDeleteTree, Key: "z/000"})) // tombstones too
	split := splitLog(uint64(len(logs)+1), 2*time.Second, "m/", 3)
	var states [][]byte
	for _, batch := range []int{1, 512} {
		s := openStore(t, t.TempDir())
		r0 := openRange(t, s, 0)
		for i := 0; i < len(logs); i += batch {
			for _, r := range r0.ApplyBatch(logs[i:min(i+batch, len(logs))]) {
				mustResult(t, r)
			}
		}
		mustResult(t, r0.ApplyBatch([]*raft.Log{split})[0])
		if d := r0.Descriptor(); d.End != "m/" {
			t.Fatalf("the parent after a big split: %s", d)
		}
		r3 := openRange(t, s, 3)
		retry := mustResult(t, r3.ApplyBatch([]*raft.Log{timed(BirthIndex+1, 3*time.Second, "key-1207", set("z/01207", "x"))})[0])
		if e := mustGet(t, r3, "z/01207"); retry.Index != e.ModifyIndex || e.ModifyIndex > split.Index {
			t.Fatalf("a retried keyed write after a big split: answered %d, the key at %d (split at %d)", retry.Index, e.ModifyIndex, split.Index)
		}
		var s0, s3 bytes.Buffer
		if _, err := r0.WriteSnapshot(&s0); err != nil {
			t.Fatal(err)
		}
		if _, err := r3.WriteSnapshot(&s3); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(s3.Bytes(), []byte("key-1207")) {
			t.Fatal("an idempotency record of the right half did not reach the new range")
		}
		states = append(states, append(s0.Bytes(), s3.Bytes()...))
	}
	if !bytes.Equal(states[0], states[1]) {
		t.Fatal("a big split left different states after different batchings")
	}
}

// Range 0 reset (its state dropped, the descriptor with it, as after a
// restore cut short) does not claim or drop the keys of the ranges split
// off it; a backup cannot be restored into range 0 while they exist.
func TestRange0ResetKeepsOffItsChildren(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	for _, r := range r0.ApplyBatch([]*raft.Log{timed(1, 0, "", set("a/1", "a")), timed(2, 0, "", set("z/1", "z")), splitLog(3, 0, "m/", 7)}) {
		mustResult(t, r)
	}
	r7 := openRange(t, s, 7)
	var backup bytes.Buffer
	if _, err := r0.WriteSnapshot(&backup); err != nil {
		t.Fatal(err)
	}
	if err := r0.Reset(); err != nil {
		t.Fatal(err)
	}
	if d := r0.Descriptor(); d.End != "m/" || keysOf(t, r0, "") != "" || keysOf(t, r7, "") != "z/1" {
		t.Fatalf("after resetting range 0: %s, range 0 %q, range 7 %q", d, keysOf(t, r0, ""), keysOf(t, r7, ""))
	}
	// A backup of a whole keyspace (a store never split) is refused.
	whole := mustOpen(t, t.TempDir())
	whole.Apply(timed(1, 0, "", set("a/1", "a")))
	whole.Apply(timed(2, 0, "", set("z/1", "other")))
	var wholeBackup, foreign bytes.Buffer
	if _, err := whole.WriteSnapshot(&wholeBackup); err != nil {
		t.Fatal(err)
	}
	if err := CopyForRestore(&foreign, bytes.NewReader(wholeBackup.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := r0.Restore(nopCloser{bytes.NewReader(foreign.Bytes())}); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("a backup of a whole keyspace restored into range 0 of a split store: %v", err)
	}
	if keysOf(t, r7, "") != "z/1" {
		t.Fatal("the refused restore touched range 7")
	}
	// Range 0's own piece is restored into range 0 only.
	foreign.Reset()
	if err := CopyForRestore(&foreign, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := r0.Restore(nopCloser{bytes.NewReader(foreign.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if keysOf(t, r0, "") != "a/1" || keysOf(t, r7, "") != "z/1" {
		t.Fatalf("after restoring range 0's piece: range 0 %q, range 7 %q", keysOf(t, r0, ""), keysOf(t, r7, ""))
	}
	if err := r7.Restore(nopCloser{bytes.NewReader(foreign.Bytes())}); err == nil {
		t.Fatal("range 7 restored range 0's piece")
	}
}

// A range that counts its own indexes (here: restored from a backup of
// several ranges) keeps counting above them after a backup of a cluster
// that never split is restored into it.
func TestForeignRestoreKeepsIndexesAbove(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	for _, r := range r0.ApplyBatch([]*raft.Log{timed(1, 0, "", set("a/1", "a")), splitLog(2, 0, "m/", 7)}) {
		mustResult(t, r)
	}
	r7 := openRange(t, s, 7)
	high := mustResult(t, r7.ApplyBatch([]*raft.Log{timed(2, time.Hour, "", set("z/1", "z"))})[0]).Index
	views := make([]*View, 2)
	for i, f := range []*FSM{r0, r7} {
		ch, cancel := f.AwaitAt(high)
		mustResult(t, f.ApplyBatch([]*raft.Log{closeLog(f.AppliedIndex()+1, high)})[0])
		views[i] = <-ch
		cancel()
	}
	var merged bytes.Buffer
	if err := WriteMergedSnapshot(&merged, views, high); err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		v.Discard()
	}

	fresh := openRange(t, openStore(t, t.TempDir()), 0)
	if err := fresh.Restore(nopCloser{bytes.NewReader(merged.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if keysOf(t, fresh, "") != "a/1 z/1" || fresh.LastIndex() < high {
		t.Fatalf("merged backup restored: keys %q, last index %d (want ≥ %d)", keysOf(t, fresh, ""), fresh.LastIndex(), high)
	}
	old := mustOpen(t, t.TempDir()) // a cluster that never split: raft indexes
	mustResult(t, old.ApplyBatch([]*raft.Log{entry(1, set("old", "x"))})[0])
	var plain, foreign bytes.Buffer
	if _, err := old.WriteSnapshot(&plain); err != nil {
		t.Fatal(err)
	}
	if err := CopyForRestore(&foreign, &plain); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Restore(nopCloser{bytes.NewReader(foreign.Bytes())}); err != nil {
		t.Fatal(err)
	}
	res := mustResult(t, fresh.ApplyBatch([]*raft.Log{timed(1, 0, "", set("new", "x"))})[0])
	if res.Index <= high {
		t.Fatalf("a write after the restore got index %d, not above %d", res.Index, high)
	}
}

// A read registered at an index gets the range as it was at that index:
// captured right before the first entry past it, in the middle of a raft
// batch, with no close needed; a read registered at an index the range is
// past gets nil.
func TestViewAtAnIndexWithoutAClose(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(1, 0, "m/", 7)})[0])
	at := clockIndex(t0.Add(1500 * time.Millisecond).UnixNano())
	views, cancel := r0.AwaitAt(at)
	defer cancel()
	out := r0.ApplyBatch([]*raft.Log{
		timed(2, time.Second, "", set("a/1", "x")),   // index below at
		timed(3, 2*time.Second, "", set("a/2", "x")), // the first past it
		timed(4, 3*time.Second, "", set("a/3", "x")),
	})
	for _, r := range out {
		mustResult(t, r)
	}
	var v *View
	select {
	case v = <-views:
	default: // delivered while applying, or never
	}
	if v == nil {
		t.Fatal("no view at the index")
	}
	defer v.Discard()
	got, err := v.Read(kv.Query{Kind: kv.ReadKeys, Key: ""})
	if err != nil || strings.Join(got.Keys, " ") != "a/1" || got.Index > at {
		t.Fatalf("the view at %d: %+v, %v", at, got, err)
	}
	late, cancelLate := r0.AwaitAt(at)
	defer cancelLate()
	mustResult(t, r0.ApplyBatch([]*raft.Log{closeLog(5, at)})[0])
	select {
	case v := <-late:
		if v != nil {
			v.Discard()
			t.Fatal("a view at an index the range is past")
		}
	default:
		t.Fatal("no answer to a read at an index the range is past")
	}
}

// A prefix kept whole is never cut: a split inside it is refused, in the
// range that holds it and, after a split at the prefix itself, in the new
// range it went to with its keys; a prefix a boundary already cuts cannot
// be kept whole; let go, it can be split.
func TestKeptWholePrefixIsNeverCut(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	apply := func(f *FSM, i uint64, e *Entry) any {
		e.Time = t0
		return f.ApplyBatch([]*raft.Log{{Index: i, Type: raft.LogCommand, Data: EncodeEntry(e)}})[0]
	}
	mustResult(t, apply(r0, 1, KeepWholeEntry("users/", true)))
	if res, ok := apply(r0, 2, SplitEntry(Split{Key: "users/m/", NewID: 3, Replicas: threeReplicas})).(error); !ok || !strings.Contains(res.Error(), "kept whole") {
		t.Fatalf("split inside a prefix kept whole: %v", res)
	}
	mustResult(t, apply(r0, 3, SplitEntry(Split{Key: "users/", NewID: 3, Replicas: threeReplicas})))
	r3 := openRange(t, s, 3)
	if res, ok := apply(r3, 2, SplitEntry(Split{Key: "users/x/", NewID: 4, Replicas: threeReplicas})).(error); !ok || !strings.Contains(res.Error(), "kept whole") {
		t.Fatalf("split inside the prefix in the range it went to: %v", res)
	}
	mustResult(t, apply(r3, 3, SplitEntry(Split{Key: "v/", NewID: 4, Replicas: threeReplicas})))
	// "u" spans range 0 ([.., "users/")) and range 3 (["users/", "v/")).
	if res, ok := apply(r0, 4, KeepWholeEntry("u", true)).(error); !ok || !strings.Contains(res.Error(), "split already") {
		t.Fatalf("keeping whole a prefix a boundary cuts: %v", res)
	}
	mustResult(t, apply(r3, 4, KeepWholeEntry("users/", false)))
	mustResult(t, apply(r3, 5, SplitEntry(Split{Key: "users/x/", NewID: 5, Replicas: threeReplicas})))
}

// A split applied in pieces that a crash cuts short after its commit (the
// parent has not deleted the moved records yet) is finished when the range
// opens again: the parent keeps nothing of the new range's, the new range
// has it all.
func TestSplitInPiecesFinishedAfterACrash(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, Options{Small: true})
	if err != nil {
		t.Fatal(err)
	}
	r0, err := s.Range(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := range maxSplitMoves + 200 {
		logs = append(logs, timed(uint64(len(logs)+1), 0, fmt.Sprintf("key-%d", i), set(fmt.Sprintf("z/%05d", i), "x")))
	}
	for _, r := range r0.ApplyBatch(logs) {
		mustResult(t, r)
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(uint64(len(logs)+1), time.Second, "m/", 3)})[0]) // copies: before the first split, records name no key
	r3, err := s.Range(3, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Keyed writes in range 3 (their records name their key), then a split
	// of range 3 that moves more than a batch holds, cut short.
	logs = nil
	for i := range maxSplitMoves + 200 {
		logs = append(logs, timed(uint64(BirthIndex+len(logs)+1), 2*time.Second, fmt.Sprintf("key3-%d", i), set(fmt.Sprintf("z/%05d", i), "y")))
	}
	for _, r := range r3.ApplyBatch(logs) {
		mustResult(t, r)
	}
	crash := errors.New("crash")
	afterSplitCommit = func() { panic(crash) }
	func() {
		defer func() {
			if r := recover(); r != crash {
				t.Fatalf("the split did not reach the crash point: %v", r)
			}
		}()
		r3.ApplyBatch([]*raft.Log{splitLog(uint64(BirthIndex+len(logs)+1), 3*time.Second, "z/", 5)})
	}()
	afterSplitCommit = nil
	_ = r3.Close()
	_ = r0.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	r3 = openRange(t, s, 3)
	r5 := openRange(t, s, 5)
	var s3, s5 bytes.Buffer
	if _, err := r3.WriteSnapshot(&s3); err != nil {
		t.Fatal(err)
	}
	if _, err := r5.WriteSnapshot(&s5); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s3.Bytes(), []byte("key3-7")) || !bytes.Contains(s5.Bytes(), []byte("key3-7")) {
		t.Fatal("after the restart, the parent still holds an idempotency record it moved, or the new range lacks it")
	}
	if d := r3.Descriptor(); d.End != "z/" {
		t.Fatalf("the parent after the restart: %s", d)
	}
	retry := mustResult(t, r5.ApplyBatch([]*raft.Log{timed(BirthIndex+1, 4*time.Second, "key3-1207", set("z/01207", "y"))})[0])
	if e := mustGet(t, r5, "z/01207"); retry.Index != e.ModifyIndex {
		t.Fatalf("a retried keyed write after the restart: answered %d, the key at %d", retry.Index, e.ModifyIndex)
	}
}

// A split call's entries carry an idempotency key (package ranges), so
// that one sent again after an unknown outcome is answered with the first
// result: the same range ID, and the split that applied, not a second ID
// or a refusal of a boundary already there.
func TestKeyedSplitEntriesApplyOnce(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	keyed := func(i uint64, e *Entry, key string) *raft.Log {
		e.IdempotencyKey, e.Time = key, t0.Add(time.Duration(i)*time.Second)
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(e)}
	}
	first := mustResult(t, r0.ApplyBatch([]*raft.Log{keyed(1, NewRangeIDEntry(), "call/id")})[0])
	again := mustResult(t, r0.ApplyBatch([]*raft.Log{keyed(2, NewRangeIDEntry(), "call/id")})[0])
	if again.Index != first.Index {
		t.Fatalf("the same call got range IDs %d and %d", first.Index, again.Index)
	}
	if other := mustResult(t, r0.ApplyBatch([]*raft.Log{keyed(3, NewRangeIDEntry(), "other/id")})[0]); other.Index == first.Index {
		t.Fatalf("another call got the same range ID %d", other.Index)
	}
	sp := Split{Key: "m/", NewID: first.Index, Replicas: threeReplicas}
	applied := mustResult(t, r0.ApplyBatch([]*raft.Log{keyed(4, SplitEntry(sp), "call")})[0])
	gen := r0.Descriptor().Generation
	repeat := r0.ApplyBatch([]*raft.Log{keyed(5, SplitEntry(sp), "call")})[0]
	if res, ok := repeat.(*kv.Result); !ok || !res.OK || res.Index != applied.Index {
		t.Fatalf("the split sent again: %+v, want the first answer %+v", repeat, applied)
	}
	if d := r0.Descriptor(); d.End != "m/" || d.Generation != gen {
		t.Fatalf("range 0 after the repeat: %s (generation %d before)", d, gen)
	}
}
