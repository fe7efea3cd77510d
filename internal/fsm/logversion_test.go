package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// The log's version is the newest typed entry applied: KV writes and the
// legacy forms show nothing, it never goes down, it survives a restart and
// travels in the range's own snapshots, and a backup restored from
// elsewhere does not bring it.
func TestLogVersionIsWhatTheLogCarried(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	logOf := func(index uint64, data []byte) *raft.Log {
		return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
	}
	steps := []struct {
		log  *raft.Log
		want int
	}{
		{entry(1, set("a", "1")), 0},
		{logOf(2, EncodeLegacyEntry(ReplicaMarkEntry("r1", true))), 0},
		{logOf(3, EncodeEntry(ReplicaMarkEntry("r1", false))), KindReplicaMark.MinVersion()},
		{logOf(4, EncodeEntry(NewRangeIDEntry())), KindNewRangeID.MinVersion()},
		{logOf(5, EncodeEntry(ReplicaMarkEntry("r1", true))), KindNewRangeID.MinVersion()}, // never lowered
	}
	for _, s := range steps {
		mustResult(t, f.Apply(s.log))
		if got := f.LogVersion(); got != s.want {
			t.Fatalf("after index %d: version %d, want %d", s.log.Index, got, s.want)
		}
	}
	want := KindNewRangeID.MinVersion()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = mustOpen(t, dir)
	if got := f.LogVersion(); got != want {
		t.Fatalf("after a restart: version %d, want %d", got, want)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	own := mustOpen(t, t.TempDir())
	if err := own.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := own.LogVersion(); got != want {
		t.Fatalf("restored from the range's snapshot: version %d, want %d", got, want)
	}

	var backup bytes.Buffer
	if err := CopyForRestore(&backup, bytes.NewReader(sink.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, before := range []int{0, KindReplicaMark.MinVersion()} {
		other := mustOpen(t, t.TempDir())
		if before > 0 {
			mustResult(t, other.Apply(logOf(1, EncodeEntry(ReplicaMarkEntry("r2", true)))))
		}
		if err := other.Restore(io.NopCloser(bytes.NewReader(backup.Bytes()))); err != nil {
			t.Fatal(err)
		}
		if got := other.LogVersion(); got != before {
			t.Fatalf("a backup restored over version %d: version %d", before, got)
		}
	}
}

// withoutLogVersion is a snapshot without the log's version: the record of
// the form entries came in, for comparing the states that a log written in
// the typed form and the same log in the legacy form leave.
func withoutLogVersion(t *testing.T, snap []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var sw *streamWriter
	_, err := readSnapshot(bytes.NewReader(snap), func(applied uint64) (bool, error) {
		sw = newStreamWriter(&out, applied)
		return true, nil
	}, func(k, v []byte) error {
		if !bytes.Equal(k, metaLogVersion) {
			sw.record(k, v)
		}
		return sw.err
	})
	if err == nil {
		err = sw.finish()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
