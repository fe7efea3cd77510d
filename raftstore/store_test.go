package raftstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFSMWithoutRaftStateIsReset(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	mustSet(t, c.nodes[0], "old-history", "x")
	c.stop(0)
	// An operator wipes the raft state to start over; the FSM is left behind.
	for _, name := range []string{"raft.db", "wal", "snapshots"} {
		if err := os.RemoveAll(filepath.Join(c.dirs[0], name)); err != nil {
			t.Fatal(err)
		}
	}
	c.start(0)
	c.waitVoters(1)
	if _, err := c.nodes[0].Get(ctx(t), "old-history"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old history's key survived: %v", err)
	}
	mustSet(t, c.nodes[0], "new-history", "y") // and new entries are not skipped
	if got := mustGetValue(t, c.nodes[0], "new-history"); got != "y" {
		t.Fatalf("new write read back as %q", got)
	}
}

// A data dir made with raft-boltdb keeps starting on it, whatever the
// default; asking for the WAL there is refused rather than starting over
// on an empty log.
func TestBoltDBDataDirKeepsItsStore(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.RaftLogStore = "boltdb" })
	mustSet(t, c.nodes[0], "k", "v")
	c.stop(0)
	if _, err := os.Stat(filepath.Join(c.dirs[0], "raft.db")); err != nil {
		t.Fatalf("no raft.db: %v", err)
	}
	c.tune = nil // the default: whatever the data dir holds
	c.start(0)
	c.waitVoters(1)
	if got := mustGetValue(t, c.nodes[0], "k"); got != "v" {
		t.Fatalf("after a restart on the boltdb log: %q", got)
	}
	c.stop(0)
	cfg := c.config(0)
	cfg.RaftLogStore = "wal"
	if s, err := Open(cfg); err == nil {
		s.Close()
		t.Fatal("a boltdb data dir opened as a WAL")
	}
}

// A second node on a data dir in use is refused before it touches a file.
func TestDataDirInUseIsRefused(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	cfg := c.config(0)
	cfg.Addr = "127.0.0.1:0"
	if s, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("a second node on a data dir in use: %v", err)
	}
}
