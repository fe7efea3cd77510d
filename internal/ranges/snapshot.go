package ranges

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// OpenSnapshot takes a backup of the whole keyspace. With one range, it is
// range 0's snapshot, as before ranges. With several, every range is
// closed at one index and the views are written as one range over the
// whole keyspace (fsm.WriteMergedSnapshot): a state a single read across
// all ranges could have seen. A stale backup without a leader to close the
// ranges is refused: no state of the whole keyspace is known then.
func (s *Set) OpenSnapshot(ctx context.Context, stale bool) (*kv.Snapshot, error) {
	v, _ := s.view()
	if len(v) == 1 {
		return s.meta.OpenSnapshot(ctx, stale)
	}
	here, complete := ofPrefix(v, "")
	if !complete {
		return nil, fmt.Errorf("%w: this node has not started every range yet", kv.ErrNoLeader)
	}
	views, at, err := closeViews(ctx, here, time.Now)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, v := range views {
			v.Discard()
		}
	}()
	return s.meta.ArchiveSnapshot(func(w io.Writer) (uint64, error) {
		return at, fsm.WriteMergedSnapshot(w, views, at)
	})
}

// RestoreSnapshot replaces the keyspace with a backup's (of any number of
// ranges). With one range, range 0 restores it, as before ranges. With
// several, the node cuts the backup along the cluster's ranges in a
// scratch store in the node's data dir (fsm.Store.Cut) and restores every range from
// its piece, range 0 (sessions, ACLs) first. The ranges are restored one
// after the other: a read meanwhile may see some restored and others
// not; once it returns, the keyspace is the backup's. Ranges that change
// meanwhile (a split) refuse their piece, and the restore stops there.
func (s *Set) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	here, err := s.settledView(ctx)
	if err != nil {
		return err
	}
	if len(here) == 1 {
		return s.meta.RestoreSnapshot(ctx, r)
	}
	backup, _, err := group.SpoolSnapshot(s.dir, r)
	if err != nil {
		return err
	}
	defer os.Remove(backup.Name())
	defer backup.Close()
	if _, err := backup.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("ranges: restore: %w", err)
	}
	scratchDir, err := os.MkdirTemp(s.dir, "restore-cut-")
	if err != nil {
		return fmt.Errorf("ranges: restore: %w", err)
	}
	defer os.RemoveAll(scratchDir)
	scratch, err := fsm.OpenScratch(scratchDir)
	if err != nil {
		return fmt.Errorf("ranges: restore: %w", err)
	}
	defer scratch.Close()
	spans := make([]rangemap.Descriptor, len(here))
	for i, l := range here {
		spans[i] = l.d
	}
	pieces, err := scratch.Cut(backup, spans)
	for _, p := range pieces {
		defer p.Close()
	}
	if err != nil {
		return err
	}
	for i, l := range here {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(pieces[i].WriteForeign(pw)) }()
		err := l.g.RestoreSnapshot(ctx, pr)
		pr.CloseWithError(errors.New("restore ended"))
		if err != nil {
			return fmt.Errorf("ranges: restore %s (%d of %d ranges restored): %w", l.d, i, len(here), err)
		}
	}
	return nil
}

// settledView returns the ranges of the whole keyspace as the cluster has
// them now: every local range caught up with its leader (linearized), so
// that no split this node has not applied yet is left out.
func (s *Set) settledView(ctx context.Context) ([]local, error) {
	for {
		v, changed := s.view()
		here, complete := ofPrefix(v, "")
		if complete {
			for _, l := range here {
				if err := l.g.Linearize(ctx); err != nil {
					return nil, err
				}
			}
			v, _ := s.view()
			if again, complete := ofPrefix(v, ""); complete && sameSpans(here, again) {
				return again, nil
			}
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: this node has not started every range yet (%v)", kv.ErrNoLeader, context.Cause(ctx))
		}
	}
}

func sameSpans(a, b []local) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].d.ID != b[i].d.ID || a[i].d.Start != b[i].d.Start || a[i].d.End != b[i].d.End {
			return false
		}
	}
	return true
}
