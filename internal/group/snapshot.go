package group

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/snaparchive"
	"github.com/raftkv/raftkv/kv"
)

// OpenSnapshot takes a snapshot in Consul's archive layout (a gzipped tar
// of meta.json, state.bin and SHA256SUMS; state.bin is raftkv's own
// stream), linearizably (it includes every write
// acknowledged before the call) unless stale. It is spooled to a temp file
// first: the copy holds off restores, and a slow client must not.
func (s *Group) OpenSnapshot(ctx context.Context, stale bool) (*kv.Snapshot, error) {
	if !stale {
		if err := s.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	return s.ArchiveSnapshot(s.fsm.WriteSnapshot)
}

// ArchiveSnapshot spools the state machine snapshot stream write writes
// (returning the index it reflects) and returns it in Consul's archive
// layout with this group's raft metadata: a node's backup of its ranges
// goes out as range 0's.
func (s *Group) ArchiveSnapshot(write func(io.Writer) (uint64, error)) (*kv.Snapshot, error) {
	f, err := os.CreateTemp(s.cfg.DataDir, "save-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("raftstore: spool snapshot: %w", err)
	}
	fail := func(err error) (*kv.Snapshot, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	index, err := write(f)
	if err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fail(fmt.Errorf("raftstore: spool snapshot: %w", err))
	}
	term := s.raft.CurrentTerm()
	meta := raft.SnapshotMeta{
		Version:            raft.SnapshotVersionMax,
		ID:                 fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli()),
		Index:              index,
		Term:               term,
		Configuration:      s.raft.GetConfiguration().Configuration(),
		ConfigurationIndex: s.fsm.ConfigIndex(),
	}
	pr, pw := io.Pipe()
	go func() {
		err := snaparchive.Write(pw, meta, f, size)
		f.Close()
		os.Remove(f.Name())
		pw.CloseWithError(err)
	}()
	return &kv.Snapshot{Index: index, ReadCloser: pr}, nil
}

// RestoreSnapshot replaces the state of the whole cluster with a snapshot
// taken by SaveSnapshot (on this cluster or another one). Keys absent from
// the snapshot are gone afterwards, on every node. It is forwarded to the
// leader like a write.
func (s *Group) RestoreSnapshot(ctx context.Context, r io.Reader) error {
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
		return s.peers.Restore(cctx, ep.Leader, f, size)
	})
}

// spoolSnapshot checks r (an archive from OpenSnapshot, or a bare raftkv
// stream) and copies its state, marked as foreign, to a temp file in the
// data dir: raft needs the size up front, and a bad upload must be refused
// before anything is touched.
func (s *Group) spoolSnapshot(r io.Reader) (*os.File, int64, error) {
	return SpoolSnapshot(s.cfg.DataDir, r)
}

// SpoolSnapshot checks r (an archive from OpenSnapshot, or a bare raftkv
// stream) and copies its state, marked as foreign, to a new temp file in
// dir, left at its end; the caller removes it.
func SpoolSnapshot(dir string, r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "restore-*.tmp")
	if err != nil {
		return nil, 0, fmt.Errorf("raftstore: spool snapshot: %w", err)
	}
	fail := func(err error) (*os.File, int64, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	br := bufio.NewReader(r)
	head, _ := br.Peek(2)
	if snaparchive.IsArchive(head) {
		err = copyArchiveState(f, br)
	} else {
		err = fsm.CopyForRestore(f, br)
	}
	if err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(fmt.Errorf("raftstore: spool snapshot: %w", err))
	}
	return f, size, nil
}

// copyArchiveState checks an archive and copies its state to dst, marked
// as foreign. Both the archive's checksums and the state's own are checked.
func copyArchiveState(dst io.Writer, archive io.Reader) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := snaparchive.Read(archive, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := fsm.CopyForRestore(dst, pr)
	pr.CloseWithError(errors.New("stopped reading")) // ends the reader if CopyForRestore gave up early
	if aerr := <-done; aerr != nil && err == nil {
		err = fmt.Errorf("%w: %v", kv.ErrInvalid, aerr)
	}
	return err
}

// restoreLocal has raft install the snapshot (followers get it by
// InstallSnapshot), then commits an empty command so that every FSM's
// applied index moves past the restore.
func (s *Group) restoreLocal(ctx context.Context, f *os.File, size int64) error {
	if !s.IsLeader() {
		return fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	// Checked where raft would keep the snapshot: a restore refused by the
	// state machine after raft stored it would be restored again at the
	// next start.
	head := make([]byte, fsm.SnapshotHeadBytes)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("raftstore: read the snapshot: %w", err)
	}
	if err := s.fsm.CheckRestore(head[:n]); err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		err := s.raft.Restore(meta, f, enqueueTimeout(ctx))
		if err == nil {
			break
		}
		// raft refuses a restore while a configuration change (autopilot
		// promoting a joined node, say) is not yet committed, before it has
		// read anything: wait for it, as long as the caller does.
		if !strings.Contains(err.Error(), "wait until the configuration entry") {
			return classifyApplyError(err)
		}
		if _, serr := f.Seek(0, io.SeekStart); serr != nil {
			return classifyApplyError(err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", kv.ErrNoLeader, err)
		case <-time.After(backoff):
		}
	}
	if _, err := s.applyLocal(ctx, fsm.KVEntry(&kv.Command{})); err != nil {
		return err
	}
	s.logger.Info("restored an operator's snapshot", "bytes", size)
	s.hooks.restored()
	return nil
}
