package group

import (
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logstore"
	"github.com/raftkv/raftkv/kv"
)

// A full disk: package diskguard keeps a reserve in the data dir and says
// when the disk is full; this file acts on it. While any voter's disk is
// full the leader refuses writes from clients (kv.ErrNoSpace, HTTP 507,
// not applied), so that what the cluster still has to write itself (a
// term, a vote, a barrier, session invalidations) finds room; reads go
// on; snapshots, which copy the whole state to disk, wait. A write that
// meets ENOSPC gives the reserve back at once and is tried again. A term
// or a vote that still cannot be written waits for space: raft panics when
// it cannot persist a term, so the node stalls instead, as a paused node
// would, and goes on once space is freed.

// MemtableFiles is Badger's memtable log: created sparse at twice the
// memtable size and written through a memory map, where a block the disk
// cannot give is a SIGBUS. Its first 5/8 (the memtable's size and a
// quarter) is allocated as soon as it appears.
var MemtableFiles = []diskguard.Keep{{Pattern: "fsm/*.mem", Part: 5.0 / 8}}

// spaceStore is the raft log and stable store, retrying a write that ran
// out of space once the guard has given its reserve back.
type spaceStore struct {
	logstore.Store
	guard   *diskguard.Guard
	closing <-chan struct{} // ends a wait for space
}

func (s spaceStore) noSpace(err error) bool { return err != nil && s.guard.NoSpace(err) }

func (s spaceStore) retry(write func() error) error {
	err := write()
	if s.noSpace(err) {
		err = write()
	}
	return err
}

// persist writes raft's stable state, waiting for space as long as it
// takes. If the node closes meanwhile, the calling goroutine (raft's) ends
// there: returning the error would make raft panic ("failed to save current
// term"), and raft's shutdown only waits for its goroutines to end.
func (s spaceStore) persist(write func() error) error {
	for {
		err := write()
		if !s.noSpace(err) {
			return err
		}
		select {
		case <-s.closing:
			runtime.Goexit()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s spaceStore) StoreLog(l *raft.Log) error {
	return s.retry(func() error { return s.Store.StoreLog(l) })
}

func (s spaceStore) StoreLogs(logs []*raft.Log) error {
	return s.retry(func() error { return s.Store.StoreLogs(logs) })
}

func (s spaceStore) DeleteRange(min, max uint64) error {
	return s.retry(func() error { return s.Store.DeleteRange(min, max) })
}

func (s spaceStore) Set(k, v []byte) error {
	return s.persist(func() error { return s.Store.Set(k, v) })
}

func (s spaceStore) SetUint64(k []byte, v uint64) error {
	return s.persist(func() error { return s.Store.SetUint64(k, v) })
}

// IsMonotonic passes the log store's promise on (raft-wal keeps no gaps).
func (s spaceStore) IsMonotonic() bool {
	m, ok := s.Store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// fullDisks is the leader's record of which servers last reported a full
// disk, with their stats in each autopilot round. A report counts for
// fullReportFor only: a server that went silent after reporting a full
// disk does not hold the cluster's writes for ever (a majority of the
// others may well have room).
type fullDisks struct{ m sync.Map } // id → time of its last report of a full disk

const fullReportFor = 10 * time.Second

func (f *fullDisks) report(id string, full bool) {
	if full {
		f.m.Store(id, time.Now())
	} else {
		f.m.Delete(id)
	}
}

// fresh returns the servers whose report of a full disk still counts:
// none, on almost every call.
func (f *fullDisks) fresh() []string {
	var ids []string
	f.m.Range(func(k, v any) bool {
		if time.Since(v.(time.Time)) < fullReportFor {
			ids = append(ids, k.(string))
		}
		return true
	})
	return ids
}

// spaceForWrite refuses a client write while the disk of this node (the
// leader) or of a voter is full. Session destroys pass: invalidations
// must go on, and they free what the sessions held.
func (s *Group) spaceForWrite(e *fsm.Entry) error {
	if e.Kind == fsm.KindSessionDestroy {
		return nil
	}
	if full := s.fullDisk(); full != "" {
		return kv.Errorf(kv.ErrNoSpace, "insufficient disk space: the disk of %s is full; writes are taken again once space is freed", full)
	}
	return nil
}

// fullDisk names this node if its disk is full, else a voter that
// reported a full disk, else "". The configuration is read only when a
// report counts (it is copied on every read, and this runs on every write).
func (s *Group) fullDisk() string {
	if s.disk.Full() {
		return s.id
	}
	reported := s.fullDisks.fresh()
	if len(reported) == 0 {
		return ""
	}
	for _, srv := range s.raft.GetConfiguration().Configuration().Servers {
		if srv.Suffrage == raft.Voter && slices.Contains(reported, string(srv.ID)) {
			return string(srv.ID)
		}
	}
	return ""
}

// diskChanged holds snapshots back while the disk is full: a snapshot is a
// copy of the whole state, which would eat the reserve.
func (s *Group) diskChanged(full bool) {
	rc := raft.ReloadableConfig{
		TrailingLogs:      s.cfg.TrailingLogs,
		SnapshotInterval:  s.cfg.SnapshotInterval,
		SnapshotThreshold: s.cfg.SnapshotThreshold,
		HeartbeatTimeout:  s.cfg.HeartbeatTimeout,
		ElectionTimeout:   s.cfg.ElectionTimeout,
	}
	if full {
		rc.SnapshotThreshold, rc.SnapshotInterval = math.MaxUint64, time.Hour
	}
	if err := s.raft.ReloadConfig(rc); err != nil {
		s.logger.Error("cannot change the snapshot settings for the disk's state", "full", full, "err", err)
	}
}
