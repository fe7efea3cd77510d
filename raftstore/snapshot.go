package raftstore

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/kv"
)

// SaveSnapshot streams a snapshot of the whole replicated state to w,
// linearizably (it includes every write acknowledged before the call)
// unless stale. It is copied to a temp file first: the copy holds off
// restores, and a slow client must not hold them off.
func (s *RaftStore) SaveSnapshot(ctx context.Context, w io.Writer, stale bool) error {
	if !stale {
		if err := s.linearize(ctx); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(s.cfg.DataDir, "save-*.tmp")
	if err != nil {
		return fmt.Errorf("raftstore: spool snapshot: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := s.fsm.WriteSnapshot(f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("raftstore: spool snapshot: %w", err)
	}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("raftstore: send snapshot: %w", err)
	}
	return nil
}

// RestoreSnapshot replaces the state of the whole cluster with a snapshot
// taken by SaveSnapshot (on this cluster or another one). Keys absent from
// the snapshot are gone afterwards, on every node. It is forwarded to the
// leader like a write.
func (s *RaftStore) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	f, size, err := s.spoolSnapshot(r)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rewind := func() error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("raftstore: rewind snapshot: %w", err)
		}
		return nil
	}
	return s.onLeader(ctx, func() error {
		if err := rewind(); err != nil {
			return err
		}
		return s.restoreLocal(ctx, f, size)
	}, func(ep leaderwatch.Epoch) error {
		if err := rewind(); err != nil {
			return err
		}
		s.metrics.forwarded.WithLabelValues("restore").Inc()
		// Bound by the epoch only: an upload takes as long as it takes.
		cctx, cancel := leaderwatch.Bind(ctx, ep)
		defer cancel()
		_, err := s.peers.callStream(cctx, "POST", ep.Leader, rpcPrefix+"restore", f, size)
		return err
	})
}

// spoolSnapshot checks r and copies it, marked as foreign, to a temp file
// in the data dir: raft needs the size up front, and a bad upload must be
// refused before anything is touched.
func (s *RaftStore) spoolSnapshot(r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(s.cfg.DataDir, "restore-*.tmp")
	if err != nil {
		return nil, 0, fmt.Errorf("raftstore: spool snapshot: %w", err)
	}
	fail := func(err error) (*os.File, int64, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	if err := fsm.CopyForRestore(f, r); err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(fmt.Errorf("raftstore: spool snapshot: %w", err))
	}
	return f, size, nil
}

// restoreLocal has raft install the snapshot (followers get it by
// InstallSnapshot), then commits an empty command so that every FSM's
// applied index moves past the restore.
func (s *RaftStore) restoreLocal(ctx context.Context, f io.Reader, size int64) error {
	if !s.isLeader() {
		return fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	if err := s.raft.Restore(meta, f, enqueueTimeout(ctx)); err != nil {
		return classifyApplyError(err)
	}
	if _, err := s.applyLocal(ctx, &kv.Command{}); err != nil {
		return err
	}
	s.logger.Info("restored an operator's snapshot", "bytes", size)
	return nil
}
