package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// A replica that holds none of a range refuses the range's birth
// snapshot (it holds no data) and, until its own parent has applied the
// split, a real snapshot of the range; once it can, it takes both.
func TestReplicaTakesOnlySnapshotsItCanHold(t *testing.T) {
	// Node A applies the split: it has range 7 from birth.
	a := openStore(t, t.TempDir())
	a0 := openRange(t, a, 0)
	for _, r := range a0.ApplyBatch([]*raft.Log{
		timed(1, 0, "", set("a/1", "a")), timed(2, 0, "", set("m/1", "m")),
		splitLog(3, time.Second, "m/", 7),
	}) {
		mustResult(t, r)
	}
	a7 := openRange(t, a, 7)
	var birth bytes.Buffer
	if err := WriteBirthSnapshot(&birth, 7); err != nil {
		t.Fatal(err)
	}
	if err := a7.CheckIncoming(birth.Bytes()); err != nil {
		t.Fatalf("a replica that applied the split refuses the birth snapshot: %v", err)
	}
	if err := a7.Restore(nopCloser{bytes.NewReader(birth.Bytes())}); err != nil || keysOf(t, a7, "") != "m/1" {
		t.Fatalf("birth restore on the split's replica: %v, keys %q", err, keysOf(t, a7, ""))
	}
	mustResult(t, a7.ApplyBatch([]*raft.Log{timed(2, 2*time.Second, "", set("m/2", "mm"))})[0])
	var real bytes.Buffer
	if _, err := a7.WriteSnapshot(&real); err != nil {
		t.Fatal(err)
	}

	// Node B has not applied the split: its range 0 still holds m/.
	b := openStore(t, t.TempDir())
	b0 := openRange(t, b, 0)
	mustResult(t, b0.ApplyBatch([]*raft.Log{timed(1, 0, "", set("a/1", "a"))})[0])
	b7, err := b.Replica(7, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b7.Close() })
	if b7.Initialized() {
		t.Fatal("an empty replica says it holds its range")
	}
	if err := b7.CheckIncoming(birth.Bytes()); err == nil {
		t.Fatal("an empty replica takes a birth snapshot")
	}
	if err := b7.Restore(nopCloser{bytes.NewReader(birth.Bytes())}); err == nil {
		t.Fatal("an empty replica restored a birth snapshot")
	}
	if err := b7.CheckIncoming(real.Bytes()); err == nil {
		t.Fatal("a replica took its range's snapshot while its range 0 still holds the range's keys")
	}
	if err := b7.Restore(nopCloser{bytes.NewReader(real.Bytes())}); err == nil {
		t.Fatal("a replica restored its range's snapshot over its range 0's keys")
	}
	if got := keysOf(t, b0, ""); got != "a/1" {
		t.Fatalf("range 0 after the refusals: %q", got)
	}

	// B's range 0 applies the split (it caught up): the empty replica
	// now holds the range as the split left it, and takes either snapshot.
	for _, r := range b0.ApplyBatch([]*raft.Log{timed(2, 0, "", set("m/1", "m")), splitLog(3, time.Second, "m/", 7)}) {
		mustResult(t, r)
	}
	if !b7.Initialized() || keysOf(t, b7, "") != "m/1" {
		t.Fatalf("the replica after its range 0 applied the split: initialized %v, keys %q", b7.Initialized(), keysOf(t, b7, ""))
	}
	if err := b7.CheckIncoming(real.Bytes()); err != nil {
		t.Fatalf("refused once it can hold it: %v", err)
	}
	if err := b7.Restore(nopCloser{bytes.NewReader(real.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, b7, ""); got != "m/1 m/2" || keysOf(t, b0, "") != "a/1" {
		t.Fatalf("after the restore: range 7 %q, range 0 %q", got, keysOf(t, b0, ""))
	}
}

// A range's descriptor follows its raft configuration: the replicas, and
// one more generation per change; range 0 before its first split keeps
// no descriptor.
func TestConfigurationEntriesUpdateTheDescriptor(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	conf := func(index uint64, ids ...string) *raft.Log {
		var c raft.Configuration
		for _, id := range ids {
			c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1"), Suffrage: raft.Voter})
		}
		c.Servers[len(c.Servers)-1].Suffrage = raft.Nonvoter
		return &raft.Log{Index: index, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(c)}
	}
	r0.ApplyBatch([]*raft.Log{conf(1, "n1", "n2")})
	if d := r0.Descriptor(); d.Generation != 0 || len(d.Replicas) != 0 {
		t.Fatalf("range 0 before a split: %+v", d)
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(2, time.Second, "m/", 7)})[0])
	r7 := openRange(t, s, 7)
	gen := r7.Descriptor().Generation
	r7.ApplyBatch([]*raft.Log{conf(2, "n1", "n2", "n3", "n4")})
	d := r7.Descriptor()
	if d.Generation != gen+1 || len(d.Replicas) != 4 || d.Replicas[3].Node != "n4" || d.Replicas[3].Voter || !d.Replicas[0].Voter {
		t.Fatalf("range 7 after a configuration change: %+v (generation was %d)", d, gen)
	}
	r7.ApplyBatch([]*raft.Log{conf(3, "n1", "n2", "n3", "n4")})
	if r7.Descriptor().Generation != gen+1 {
		t.Fatal("an unchanged configuration bumped the generation")
	}
	_ = r7.Close()
	r7 = openRange(t, s, 7)
	if got := r7.Descriptor(); got.Generation != gen+1 || len(got.Replicas) != 4 {
		t.Fatalf("after reopening: %+v", got)
	}
}

// Range 0's routing copy of the range map keeps the newest generation it
// is sent, only range 0 takes it, and a backup does not carry it.
func TestRangeMapCopy(t *testing.T) {
	s := openStore(t, t.TempDir())
	r0 := openRange(t, s, 0)
	meta := func(index, gen uint64, end string) any {
		d := rangemap.Descriptor{ID: 7, Start: "m/", End: end, Generation: gen, Replicas: threeReplicas}
		return r0.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: EncodeEntry(RangeMetaEntry(d))}})[0]
	}
	if !mustResult(t, meta(1, 2, "t/")).OK || mustResult(t, meta(2, 1, "")).OK || mustResult(t, meta(3, 2, "")).OK {
		t.Fatal("the copy took an older or equal generation")
	}
	got, err := r0.RangeMap()
	if err != nil || len(got) != 1 || got[0].End != "t/" || got[0].Generation != 2 {
		t.Fatalf("the copy: %v, %v", got, err)
	}
	if !mustResult(t, meta(4, 3, "")).OK {
		t.Fatal("a newer generation refused")
	}
	mustResult(t, r0.ApplyBatch([]*raft.Log{splitLog(5, time.Second, "m/", 7)})[0])
	r7 := openRange(t, s, 7)
	e := RangeMetaEntry(rangemap.Descriptor{ID: 9, Generation: 1})
	if res := r7.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: EncodeEntry(e)}})[0]; res == nil {
		t.Fatal("range 7 took a copy of the range map")
	} else if _, ok := res.(error); !ok {
		t.Fatalf("range 7 took a copy of the range map: %v", res)
	}
	var snap, foreign bytes.Buffer
	if _, err := r0.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := CopyForRestore(&foreign, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(snap.Bytes(), rangeMetaKey(7)) || bytes.Contains(foreign.Bytes(), rangeMetaKey(7)) {
		t.Fatal("the copy is not in range 0's snapshots, or is in what a restore takes")
	}
}

// Two empty replicas must not take overlapping snapshots at once (a
// parent's older one, its child's newer one): the first checked claims its
// span until its restore is over.
func TestIncomingSnapshotsClaimTheirSpan(t *testing.T) {
	a := openStore(t, t.TempDir())
	a0 := openRange(t, a, 0)
	mustResult(t, a0.ApplyBatch([]*raft.Log{timed(1, 0, "", set("z/1", "z")), splitLog(2, time.Second, "m/", 7)})[0])
	a7 := openRange(t, a, 7)
	mustResult(t, a7.ApplyBatch([]*raft.Log{timed(2, 2*time.Second, "", set("z/2", "z"))})[0])
	var parent, child bytes.Buffer
	if _, err := a7.WriteSnapshot(&parent); err != nil { // before its split: ["m/", ∞)
		t.Fatal(err)
	}
	mustResult(t, a7.ApplyBatch([]*raft.Log{splitLog(3, 3*time.Second, "t/", 9)})[0])
	a9 := openRange(t, a, 9)
	mustResult(t, a9.ApplyBatch([]*raft.Log{timed(2, 4*time.Second, "", set("z/3", "z"))})[0])
	if _, err := a9.WriteSnapshot(&child); err != nil {
		t.Fatal(err)
	}

	b := openStore(t, t.TempDir())
	b0 := openRange(t, b, 0)
	mustResult(t, b0.ApplyBatch([]*raft.Log{timed(1, 0, "", set("z/1", "z")), splitLog(2, time.Second, "m/", 7)})[0])
	empty := func(id uint64) *FSM {
		f, err := b.Replica(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	b7, b9 := empty(7), empty(9)
	if err := b7.Reset(); err != nil { // empty, as on a node that missed the split
		t.Fatal(err)
	}
	if err := b7.CheckIncoming(parent.Bytes()); err != nil {
		t.Fatalf("the parent's snapshot refused: %v", err)
	}
	if err := b9.CheckIncoming(child.Bytes()); err == nil {
		t.Fatal("the child's snapshot taken while the parent's, overlapping it, is claimed")
	}
	b7.ReleaseClaim()
	if err := b9.CheckIncoming(child.Bytes()); err != nil {
		t.Fatalf("the child's snapshot refused once the parent's claim ended: %v", err)
	}
}
