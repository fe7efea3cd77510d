package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

func mustOpen(t testing.TB, dir string) *FSM {
	t.Helper()
	f, err := Open(dir, Options{Small: true})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func entry(index uint64, ops ...kv.Op) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: EncodeCommand(&kv.Command{Ops: ops})}
}

func set(key, value string) kv.Op { return kv.Op{Verb: kv.VerbSet, Key: key, Value: []byte(value)} }

func mustResult(t *testing.T, v interface{}) *kv.Result {
	t.Helper()
	r, ok := v.(*kv.Result)
	if !ok {
		t.Fatalf("apply returned %T (%v), want *kv.Result", v, v)
	}
	return r
}

func mustGet(t *testing.T, f *FSM, key string) kv.Entry {
	t.Helper()
	e, _, err := f.Get(key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return e
}

func wantAbsent(t *testing.T, f *FSM, key string) {
	t.Helper()
	if _, _, err := f.Get(key); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("get %q: err=%v, want ErrNotFound", key, err)
	}
}

// dump lists the whole keyspace as "key=value@create/modify" lines.
func dump(t *testing.T, f *FSM) string {
	t.Helper()
	entries, _, err := f.List("")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&b, "%s=%s@%d/%d flags=%d\n", e.Key, e.Value, e.CreateIndex, e.ModifyIndex, e.Flags)
	}
	return b.String()
}

func TestSetGetIndexes(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	mustResult(t, f.Apply(entry(3, set("a", "1"))))
	mustResult(t, f.Apply(entry(5, kv.Op{Verb: kv.VerbSet, Key: "a", Value: []byte("2"), Flags: 42})))
	e := mustGet(t, f, "a")
	if string(e.Value) != "2" || e.CreateIndex != 3 || e.ModifyIndex != 5 || e.Flags != 42 {
		t.Fatalf("got %+v", e)
	}
	mustResult(t, f.Apply(entry(6, kv.Op{Verb: kv.VerbDelete, Key: "a"})))
	wantAbsent(t, f, "a")
	mustResult(t, f.Apply(entry(7, set("a", "3"))))
	if e := mustGet(t, f, "a"); e.CreateIndex != 7 {
		t.Fatalf("recreated key CreateIndex = %d, want 7", e.CreateIndex)
	}
	if f.AppliedIndex() != 7 {
		t.Fatalf("applied=%d", f.AppliedIndex())
	}
}

func TestCASSemantics(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	cas := func(idx, want uint64, key string) *kv.Result {
		return mustResult(t, f.Apply(entry(idx, kv.Op{Verb: kv.VerbCAS, Key: key, Value: []byte("v"), Index: want})))
	}
	if r := cas(1, 0, "k"); !r.OK {
		t.Fatalf("cas=0 on absent key failed: %+v", r)
	}
	if r := cas(2, 0, "k"); r.OK {
		t.Fatal("cas=0 on existing key succeeded")
	}
	if r := cas(3, 7, "k"); r.OK {
		t.Fatal("cas with wrong index succeeded")
	}
	if r := cas(4, 1, "k"); !r.OK {
		t.Fatalf("cas with right index failed: %+v", r)
	}
	if e := mustGet(t, f, "k"); e.ModifyIndex != 4 || e.CreateIndex != 1 {
		t.Fatalf("after cas: %+v", e)
	}
	del := mustResult(t, f.Apply(entry(5, kv.Op{Verb: kv.VerbDeleteCAS, Key: "k", Index: 1})))
	if del.OK {
		t.Fatal("delete-cas with stale index succeeded")
	}
	del = mustResult(t, f.Apply(entry(6, kv.Op{Verb: kv.VerbDeleteCAS, Key: "k", Index: 4})))
	if !del.OK {
		t.Fatal("delete-cas with right index failed")
	}
	wantAbsent(t, f, "k")
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	for i := 1; i <= 200; i++ {
		mustResult(t, src.Apply(entry(uint64(i), kv.Op{Verb: kv.VerbSet, Key: fmt.Sprintf("k/%03d", i), Value: bytes.Repeat([]byte{byte(i)}, i*37), Flags: uint64(i)})))
	}
	mustResult(t, src.Apply(entry(201, kv.Op{Verb: kv.VerbDelete, Key: "k/100"})))
	want := dump(t, src)

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after Snapshot() must not leak into the snapshot.
	mustResult(t, src.Apply(entry(202, set("late", "x"))))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := mustOpen(t, t.TempDir())
	mustResult(t, dst.Apply(entry(1, set("stale-only-in-dst", "gone after restore"))))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, dst); got != want {
		t.Fatalf("restored state differs\n got: %.300s\nwant: %.300s", got, want)
	}
	wantAbsent(t, dst, "stale-only-in-dst")
	wantAbsent(t, dst, "late")
	if dst.AppliedIndex() != 201 {
		t.Fatalf("restored applied=%d, want 201", dst.AppliedIndex())
	}
	// A corrupted stream is refused.
	bad := append([]byte(nil), sink.Bytes()...)
	bad[len(bad)/2] ^= 0xff
	if err := mustOpen(t, t.TempDir()).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("restore of a corrupted snapshot succeeded")
	}
}

func TestReplayAfterRestartChangesNothing(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, Options{Small: true})
	if err != nil {
		t.Fatal(err)
	}
	logs := []*raft.Log{
		entry(1, set("a", "1")),
		entry(2, kv.Op{Verb: kv.VerbCAS, Key: "a", Value: []byte("2"), Index: 1}),
		entry(3, set("b", "1")),
		entry(4, kv.Op{Verb: kv.VerbDelete, Key: "b"}),
		{Index: 5, Term: 1, Type: raft.LogConfiguration},
	}
	f.ApplyBatch(logs)
	want := dump(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = mustOpen(t, dir)
	if f.AppliedIndex() != 5 || f.ConfigIndex() != 5 {
		t.Fatalf("applied/config index after reopen = %d/%d, want 5/5", f.AppliedIndex(), f.ConfigIndex())
	}
	// Raft replays the whole log after a restart; nothing may change, and
	// in particular the CAS at index 2 must not be re-judged.
	res := f.ApplyBatch(logs)
	for i, r := range res {
		if r != nil {
			t.Fatalf("replayed entry %d returned %v, want nil (skipped)", i, r)
		}
	}
	if got := dump(t, f); got != want {
		t.Fatalf("state changed on replay\n got: %s\nwant: %s", got, want)
	}
	// A resuming node keeps its newer state instead of an older snapshot.
	older := mustOpen(t, t.TempDir())
	older.Apply(entry(1, set("a", "1")))
	sink := &memSink{}
	if _, err := older.WriteSnapshot(sink); err != nil {
		t.Fatal(err)
	}
	f.SetResuming(true)
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, f); got != want {
		t.Fatalf("resuming restore replaced newer state\n got: %s\nwant: %s", got, want)
	}
}

func TestBatchIsAtomicPerCommand(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	res := f.ApplyBatch([]*raft.Log{
		entry(1, set("a", "1")),
		// A failed check rolls back its own command only, even though it
		// shares the Badger transaction with its neighbours.
		entry(2, set("b", "1"), kv.Op{Verb: kv.VerbCheckIndex, Key: "a", Index: 99}),
		entry(3, kv.Op{Verb: kv.VerbCAS, Key: "a", Value: []byte("2"), Index: 1}), // sees entry 1
		entry(4, kv.Op{Verb: kv.VerbGetTree, Key: ""}),
	})
	if r := mustResult(t, res[1]); r.OK || len(r.Errors) != 1 || r.Errors[0].OpIndex != 1 {
		t.Fatalf("failed txn result: %+v", r)
	}
	if r := mustResult(t, res[2]); !r.OK {
		t.Fatalf("cas on a key written earlier in the same batch failed: %+v", r)
	}
	if r := mustResult(t, res[3]); len(r.Entries) != 1 || string(r.Entries[0].Value) != "2" {
		t.Fatalf("get-tree inside the batch saw %+v", r.Entries)
	}
	wantAbsent(t, f, "b")
	if f.AppliedIndex() != 4 {
		t.Fatalf("applied=%d, want 4", f.AppliedIndex())
	}
}

func TestOversizedDeleteTree(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	var logged bytes.Buffer
	f.logger = slog.New(slog.NewTextHandler(&logged, nil))
	const n = 60000 // far more deletes than one small-memtable transaction holds
	var logs []*raft.Log
	for i := 0; i < n; i += 1000 {
		ops := make([]kv.Op, 0, 64)
		var batch []*raft.Log
		for j := i; j < i+1000; j++ {
			ops = append(ops, set(fmt.Sprintf("big/%06d", j), "v"))
			if len(ops) == 50 {
				batch = append(batch, entry(uint64(len(logs)+len(batch)+1), ops...))
				ops = ops[:0:0]
			}
		}
		logs = append(logs, batch...)
		f.ApplyBatch(batch)
	}
	mustResult(t, f.Apply(entry(uint64(len(logs)+1), set("keep", "1"))))
	last := uint64(len(logs) + 2)
	r := mustResult(t, f.Apply(entry(last, kv.Op{Verb: kv.VerbDeleteTree, Key: "big/"})))
	if !r.OK {
		t.Fatalf("delete-tree failed: %+v", r)
	}
	if keys, _, _ := f.Keys("big/", ""); len(keys) != 0 {
		t.Fatalf("%d keys left under big/", len(keys))
	}
	mustGet(t, f, "keep")
	if !bytes.Contains(logged.Bytes(), []byte("applied oversized command")) {
		t.Fatal("the delete-tree fitted in one transaction; the test no longer covers the oversized path")
	}
	if f.AppliedIndex() != last {
		t.Fatalf("applied = %d, want %d", f.AppliedIndex(), last)
	}
}

func TestKeysWithSeparator(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	for i, k := range []string{"a/b/1", "a/b/2", "a/c", "a/d/x/y", "b"} {
		f.Apply(entry(uint64(i+1), set(k, "v")))
	}
	keys, _, err := f.Keys("a/", "/")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[a/b/ a/c a/d/]" {
		t.Fatalf("keys = %v", keys)
	}
	keys, _, _ = f.Keys("", "")
	if len(keys) != 5 {
		t.Fatalf("all keys = %v", keys)
	}
}

func TestCodecRoundTripAndCorruption(t *testing.T) {
	c := &kv.Command{
		Time:           time.Unix(1700000000, 123),
		IdempotencyKey: "req-1",
		Ops: []kv.Op{
			{Verb: kv.VerbSet, Key: "a", Value: []byte("hello"), Flags: 7},
			{Verb: kv.VerbDeleteCAS, Key: "b", Index: 99},
		},
	}
	b := EncodeCommand(c)
	if !bytes.Equal(b, EncodeCommand(c)) {
		t.Fatal("encoding is not deterministic")
	}
	got, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(c) {
		t.Fatalf("round trip: got %+v want %+v", got, c)
	}
	for i := 0; i < len(b); i++ {
		if _, err := DecodeCommand(b[:i]); err == nil {
			t.Fatalf("truncated command (%d of %d bytes) decoded", i, len(b))
		}
	}
	if _, err := DecodeCommand(append(b, 0)); err == nil {
		t.Fatal("trailing garbage accepted")
	}
	// Garbage in the log answers an error and changes nothing.
	f := mustOpen(t, t.TempDir())
	if _, ok := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{1, 0xff}}).(error); !ok {
		t.Fatal("garbage entry did not return an error")
	}
	if f.AppliedIndex() != 1 || dump(t, f) != "" {
		t.Fatal("garbage entry changed state or did not advance the applied index")
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func TestCopyForRestoreMarksForeignAndRejectsGarbage(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	for i := 1; i <= 20; i++ {
		src.Apply(entry(uint64(i), set(fmt.Sprintf("k%02d", i), "v")))
	}
	var raw, copied bytes.Buffer
	if _, err := src.WriteSnapshot(&raw); err != nil {
		t.Fatal(err)
	}
	if err := CopyForRestore(&copied, bytes.NewReader(raw.Bytes())); err != nil {
		t.Fatal(err)
	}
	dst := mustOpen(t, t.TempDir())
	for i := 1; i <= 50; i++ { // dst has its own, longer history
		dst.Apply(entry(uint64(i), set("mine", "x")))
	}
	_, before, _ := dst.List("")
	if err := dst.Restore(io.NopCloser(&copied)); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, dst), dump(t, src); got != want {
		t.Fatalf("restored state differs:\n%s\nwant:\n%s", got, want)
	}
	if dst.AppliedIndex() != 0 {
		t.Fatalf("foreign snapshot restored with applied index %d, want 0", dst.AppliedIndex())
	}
	if _, after, _ := dst.List(""); after < before {
		t.Fatalf("query index went back from %d to %d across a foreign restore", before, after)
	}
	for _, bad := range [][]byte{nil, []byte("hello"), raw.Bytes()[:raw.Len()-1]} {
		if err := CopyForRestore(io.Discard, bytes.NewReader(bad)); !errors.Is(err, kv.ErrInvalid) {
			t.Fatalf("garbage of %d bytes accepted: %v", len(bad), err)
		}
	}
}
