package ranges

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
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

// RestoreSnapshot replaces the keyspace with a backup's. A cluster of
// several ranges refuses it: a restore replaces range 0's state through
// its log, and the other ranges would keep theirs. Restore into a cluster
// of one range (a backup of any number of ranges restores into one).
func (s *Set) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	if v, _ := s.view(); len(v) > 1 {
		return fmt.Errorf("%w: this cluster has %d ranges; restore the backup into a cluster of one range (a new cluster, or this one's data dirs wiped)", kv.ErrNotImplemented, len(v))
	}
	return s.meta.RestoreSnapshot(ctx, r)
}
