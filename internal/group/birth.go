package group

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// A range a split made starts its raft history with a birth snapshot (see
// internal/fsm/birth.go) instead of a bootstrap entry: then no replica
// can ever rebuild the range by replaying its log onto an empty state.

// writeBirth starts the group's history with range id's birth snapshot,
// naming servers as its configuration.
func writeBirth(snaps raft.SnapshotStore, trans raft.Transport, id uint64, servers []raft.Server) error {
	sink, err := snaps.Create(raft.SnapshotVersionMax, fsm.BirthIndex, 1, raft.Configuration{Servers: servers}, fsm.BirthIndex, trans)
	if err != nil {
		return fmt.Errorf("group: birth snapshot: %w", err)
	}
	if err := fsm.WriteBirthSnapshot(sink, id); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("group: birth snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("group: birth snapshot: %w", err)
	}
	return nil
}

// freshenSnapshot takes a snapshot on a range's new leader whose newest
// snapshot is its birth snapshot or holds another span than the range has
// now (taken before a split), so that what it sends a replica that lacks
// the range is the range as it is (a replica refuses a snapshot that
// overlaps a range it holds).
func (g *Group) freshenSnapshot() {
	list, err := g.snaps.List()
	if err != nil || len(list) == 0 {
		return
	}
	_, rc, err := g.snaps.Open(list[0].ID)
	if err != nil {
		return
	}
	head := make([]byte, fsm.SnapshotHeadBytes)
	n, _ := io.ReadFull(rc, head)
	rc.Close()
	if !g.fsm.Outdated(head[:n]) {
		return
	}
	g.SnapshotSoon()
}

// SnapshotSoon has this node, if it leads, take a snapshot of the range
// now instead of at the next threshold: after a split, a replica that
// lacks the range must get the range as it is now, not an older snapshot
// that overlaps the new range (which it would refuse).
func (g *Group) SnapshotSoon() {
	if !g.IsLeader() || g.ctx.Err() != nil {
		return
	}
	g.spawn(func() {
		if err := g.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			g.logger.Warn("cannot take a snapshot of the range after its split", "err", err)
		}
	})
}

// checkedSnapshots is raft's snapshot store, except that a snapshot
// arriving from the leader is checked by the state machine from its first
// bytes (fsm.CheckIncoming) and refused before raft keeps it: a snapshot
// kept but not restorable would stop the group at its next start.
type checkedSnapshots struct {
	raft.SnapshotStore
	check   func(head []byte) (claimed bool, err error)
	release func() // ends what a check claimed, for a snapshot raft drops
}

func (s checkedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration, confIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, conf, confIndex, trans)
	if err != nil {
		return nil, err
	}
	return &checkedSink{SnapshotSink: sink, check: s.check, release: s.release}, nil
}

type checkedSink struct {
	raft.SnapshotSink
	check   func(head []byte) (claimed bool, err error)
	release func()
	head    bytes.Buffer
	checked bool
	claimed bool // this sink's check claimed the span: it ends the claim if raft drops the snapshot
}

func (s *checkedSink) Write(p []byte) (int, error) {
	if !s.checked {
		s.head.Write(p[:min(len(p), fsm.SnapshotHeadBytes-s.head.Len())])
		if s.head.Len() >= fsm.SnapshotHeadBytes {
			if err := s.verify(); err != nil {
				return 0, err
			}
		}
	}
	return s.SnapshotSink.Write(p)
}

func (s *checkedSink) Close() error {
	if !s.checked {
		if err := s.verify(); err != nil {
			return err
		}
	}
	err := s.SnapshotSink.Close()
	if err != nil && s.claimed {
		s.release() // not kept: raft will not restore it
	}
	return err
}

// Cancel drops the snapshot (raft's own failures, or a refusal).
func (s *checkedSink) Cancel() error {
	if s.claimed {
		s.release()
	}
	return s.SnapshotSink.Cancel()
}

func (s *checkedSink) verify() error {
	s.checked = true
	claimed, err := s.check(s.head.Bytes())
	s.claimed = claimed
	s.head = bytes.Buffer{}
	if err != nil {
		_ = s.SnapshotSink.Cancel()
		return fmt.Errorf("group: snapshot refused: %w", err)
	}
	return nil
}

var _ io.Writer = (*checkedSink)(nil)
