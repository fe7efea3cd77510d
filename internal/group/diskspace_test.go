package group

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logstore"
	"github.com/raftkv/raftkv/kv"
)

// fullStore fails its writes with ENOSPC while failures > 0.
type fullStore struct {
	logstore.Store
	failures atomic.Int32
	writes   atomic.Int32
}

func (f *fullStore) write() error {
	f.writes.Add(1)
	if f.failures.Add(-1) >= 0 {
		return &os.PathError{Op: "write", Path: "wal", Err: syscall.ENOSPC}
	}
	return nil
}
func (f *fullStore) StoreLogs([]*raft.Log) error    { return f.write() }
func (f *fullStore) SetUint64([]byte, uint64) error { return f.write() }

func newSpaceStore(t *testing.T, failures int32) (spaceStore, *fullStore, *diskguard.Guard, chan struct{}) {
	g, err := diskguard.Open(t.TempDir(), diskguard.Options{Reserve: 1 << 20, Available: func(string) (uint64, error) { return 1 << 30, nil }})
	if err != nil {
		t.Fatal(err)
	}
	f := &fullStore{}
	f.failures.Store(failures)
	closing := make(chan struct{})
	return spaceStore{Store: f, guard: g, closing: closing}, f, g, closing
}

// A log append that meets ENOSPC gives the reserve back and is tried once
// more; raft handles a failed append (a leader steps down, a follower
// refuses the entries).
func TestLogAppendRetriedOnceOnAFullDisk(t *testing.T) {
	s, f, g, _ := newSpaceStore(t, 1)
	if err := s.StoreLogs(nil); err != nil || !g.Full() || f.writes.Load() != 2 {
		t.Fatalf("after one ENOSPC: err %v, full %v, %d writes", err, g.Full(), f.writes.Load())
	}
	s, f, _, _ = newSpaceStore(t, 5)
	if err := s.StoreLogs(nil); !errors.Is(err, syscall.ENOSPC) || f.writes.Load() != 2 {
		t.Fatalf("disk still full: err %v, %d writes", err, f.writes.Load())
	}
}

// A term or a vote waits for space (raft panics when it cannot persist a
// term); when the node closes, the waiting goroutine ends without an error.
func TestStableWritesWaitForSpace(t *testing.T) {
	s, f, _, _ := newSpaceStore(t, 3)
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil || f.writes.Load() != 4 {
		t.Fatalf("err %v after %d writes", err, f.writes.Load())
	}
	s, _, _, closing := newSpaceStore(t, 1<<30)
	returned, ended := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(ended)
		returned <- s.SetUint64([]byte("CurrentTerm"), 8)
	}()
	close(closing)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("a wait for space outlived the node")
	}
	select {
	case err := <-returned:
		t.Fatalf("the write returned (raft would panic on it): %v", err)
	default:
	}
}

func TestOnlySessionDestroysPassAFullDisk(t *testing.T) {
	disk, err := diskguard.Open(t.TempDir(), diskguard.Options{Reserve: 1 << 20, Available: func(string) (uint64, error) { return 1 << 30, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if !disk.NoSpace(syscall.ENOSPC) || !disk.Full() {
		t.Fatal("the guard does not see the disk full")
	}
	g := &Group{id: "n1", disk: disk}
	for _, c := range []struct {
		e    *fsm.Entry
		pass bool
	}{
		{fsm.SessionDestroyEntry("a"), true},
		{fsm.KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "k"}}}), false},
		{fsm.SessionCreateEntry(kv.Session{Node: "n1"}), false},
		{fsm.ReplicaMarkEntry("n2", true), false},
	} {
		err := g.spaceForWrite(c.e)
		if (err == nil) != c.pass || (err != nil && !errors.Is(err, kv.ErrNoSpace)) {
			t.Errorf("%s: %v, want pass %v", c.e.Kind, err, c.pass)
		}
	}
}
