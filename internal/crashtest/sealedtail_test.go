package crashtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/raftkv/raftkv/internal/logstore"
)

// TestWALAppendsAfterCrashBeforeRotation pins down, deterministically, a
// crash state the crash loop reaches in raft-wal v0.4.2: the StoreLogs call
// that fills a segment seals it on disk (index block written, fsynced) and
// returns; the rotation that records the seal in the WAL's metadata and
// opens the next segment runs afterwards, in the background. A crash in
// between leaves the metadata as it was, naming the sealed file as the
// tail, and after the restart every append fails with "segment is sealed":
// the node can never write its log again.
//
// The crash is reproduced exactly: the metadata file is put back as it was
// before the sealing append, which is what the disk holds if the process
// dies before the rotation's commit.
func TestWALAppendsAfterCrashBeforeRotation(t *testing.T) {
	dir := t.TempDir()
	open := func() logstore.Store {
		t.Helper()
		s, err := logstore.Open(dir, logstore.WAL, hclog.NewNullLogger(), logstore.Options{SegmentBytes: 8 << 10})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	}
	s := open()
	metaPath := filepath.Join(dir, "wal", metadb.FileName)
	var before []byte
	last := uint64(0)
	for segments(t, dir) < 2 {
		if last == 100 {
			t.Fatal("no segment rotation after 100 appends of 1 KiB into 8 KiB segments")
		}
		var err error
		if before, err = os.ReadFile(metaPath); err != nil {
			t.Fatal(err)
		}
		last++
		if err := s.StoreLogs([]*raft.Log{{Index: last, Term: 1, Data: make([]byte, 1<<10)}}); err != nil {
			t.Fatalf("append %d: %v", last, err)
		}
		// DeleteRange waits for a rotation in progress; this range is empty.
		if err := s.DeleteRange(0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(metaPath, before, 0o600); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	var l raft.Log
	if got, err := s.LastIndex(); err != nil || got != last {
		t.Fatalf("last index %d (%v) after the restart, want %d", got, err, last)
	}
	if err := s.GetLog(last, &l); err != nil {
		t.Fatalf("read entry %d after the restart: %v", last, err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: last + 1, Term: 1}}); err != nil {
		t.Fatalf("append %d after a crash between the seal of a segment and its rotation: %v", last+1, err)
	}
}

func segments(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}
