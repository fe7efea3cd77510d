package fsm

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Restoring a backup into a cluster of several ranges. A backup is one
// range over the whole keyspace (WriteMergedSnapshot). The node restores
// it into a scratch store, cuts it there along the cluster's ranges by
// applying the same split commands the cluster's ranges were made by (so
// that every record of bookkeeping goes where a split sends it), and
// restores each range from its piece. A piece carries its range's
// descriptor first; a range takes a foreign piece only if it is its own
// span, and keeps its own descriptor (replicas, generation).

// OpenScratch opens an empty store in dir (which must not exist or be
// empty) for cutting a backup; remove dir after closing it.
func OpenScratch(dir string) (*Store, error) {
	s, err := OpenStore(dir, Options{})
	if err != nil {
		return nil, err
	}
	s.scratch = true
	return s, nil
}

// Cut restores a backup (foreign state, as CopyForRestore writes it) into
// the scratch store's range 0 and splits it along ranges (the cluster's,
// in key order, the first starting at ""), keeping their IDs. It returns
// the scratch ranges, in the same order; close the store when done.
func (s *Store) Cut(backup io.Reader, ranges []rangemap.Descriptor) (out []*FSM, err error) {
	if !s.scratch {
		return nil, errors.New("fsm: cut: not a scratch store")
	}
	if len(ranges) == 0 || ranges[0].ID != 0 || ranges[0].Start != "" {
		return nil, errors.New("fsm: cut: the ranges must start with range 0 at the start of the keyspace")
	}
	defer func() {
		if r := recover(); r != nil { // a split too big for one transaction panics (fsm.go): no node may die of a backup
			err = fmt.Errorf("%w: the backup cannot be cut along this cluster's ranges: %v", kv.ErrInvalid, r)
		}
	}()
	r0, err := s.Range(0, nil)
	if err != nil {
		return nil, err
	}
	out = append(out, r0)
	if err := r0.Restore(io.NopCloser(backup)); err != nil {
		return out, err
	}
	now := time.Now()
	for i, d := range ranges[1:] {
		last := out[len(out)-1]
		e := SplitEntry(Split{Key: d.Start, NewID: d.ID, Replicas: d.Replicas})
		e.Time = now
		idx := last.AppliedIndex() + 1
		res := last.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: EncodeEntry(e)})
		if err, ok := res.(error); ok {
			return out, fmt.Errorf("%w: the backup cannot be cut at %q (range %d of %d): %v", kv.ErrInvalid, d.Start, i+2, len(ranges), err)
		}
		child, err := s.Range(d.ID, nil)
		if err != nil {
			return out, err
		}
		out = append(out, child)
	}
	return out, nil
}

// WriteForeign writes the range's state as a piece to restore into the
// range of the same span of a cluster (applied index 0: another history).
func (f *FSM) WriteForeign(w io.Writer) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	txn := f.db.NewTransaction(false)
	defer txn.Discard()
	return f.writeSnapshot(txn, f.span.Load(), 0, w)
}

// CheckRestore decides from a foreign snapshot's first bytes whether the
// range may restore it: a whole-keyspace backup only into range 0 alone,
// a piece only into the range of its span.
func (f *FSM) CheckRestore(head []byte) error {
	piece, ok, err := pieceDescriptor(head, f.ks)
	if err != nil {
		return err
	}
	span := f.span.Load()
	if !ok {
		if f.ks.id == 0 && span.End == "" {
			if others, err := f.store.hasRanges(); err != nil || !others {
				return err
			}
		}
		return fmt.Errorf("%w: the cluster has several ranges; a backup is restored into them through the node (it cuts it along the ranges)", kv.ErrInvalid)
	}
	if piece.ID != span.ID || piece.Start != span.Start || piece.End != span.End {
		return fmt.Errorf("%w: a piece of a backup for %s, but this is %s (the ranges changed during the restore?)", kv.ErrInvalid, piece, span)
	}
	return nil
}

// pieceDescriptor reads the descriptor a foreign snapshot starts with, if
// it does (a piece of a backup cut along ranges).
func pieceDescriptor(head []byte, ks keyspace) (rangemap.Descriptor, bool, error) {
	h := readSnapshotHead(head, ks)
	if !h.ours {
		return rangemap.Descriptor{}, false, fmt.Errorf("%w: not a raftkv snapshot", kv.ErrInvalid)
	}
	return h.descriptor, h.hasDescriptor, nil
}
