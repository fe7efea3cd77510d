package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// A range made by a split is born on every replica of its parent from the
// state the parent's replica left in the store: its raft history starts
// with a birth snapshot (raft index BirthIndex), which holds no data and
// stands for "the state the split left here". Every entry of the new
// range's log comes after it, so a replica that was not there at the split
// (a node that joined later, or one that caught up the parent from a
// snapshot taken after the split) can only get the range through a real
// snapshot, never by replaying the log onto an empty state.
//
// A birth snapshot is refused, before raft keeps it, by a replica that
// holds none of the range (CheckIncoming), and the range's leader replaces
// it with a real snapshot as soon as it leads (see internal/group).

// BirthIndex is the raft index of a new range's birth snapshot.
const BirthIndex = 1

var birthMagic = []byte("RKVBORN1")

// WriteBirthSnapshot writes range id's birth snapshot.
func WriteBirthSnapshot(w io.Writer, id uint64) error {
	_, err := w.Write(binary.AppendUvarint(append([]byte(nil), birthMagic...), id))
	return err
}

// SnapshotHeadBytes is how much of a snapshot stream CheckIncoming needs
// to decide (or less, if the stream is shorter).
const SnapshotHeadBytes = 64 << 10

// CheckIncoming decides from the first bytes of a snapshot stream (up to
// SnapshotHeadBytes, or all of it if shorter) whether this replica can
// take it, before raft keeps it: a birth snapshot only where the range's
// state is (this node applied the split); a snapshot newer than this
// replica's state only if no other range of this node holds keys of its
// span (a node still catching up on the parent must apply the split, or
// the parent's own snapshot, first: TiKV refuses overlapping snapshots the
// same way). A refusal makes the leader try again later.
func (f *FSM) CheckIncoming(head []byte) error {
	_, err := f.ClaimIncoming(head)
	return err
}

// ClaimIncoming is CheckIncoming, saying whether it claimed the span of
// the snapshot (then ReleaseClaim ends the claim once the snapshot is
// restored or dropped).
func (f *FSM) ClaimIncoming(head []byte) (claimed bool, err error) {
	h := readSnapshotHead(head, f.ks)
	if h.birth {
		if f.Initialized() {
			return false, nil
		}
		return false, fmt.Errorf("%w: range %d's birth snapshot holds no data, and this replica holds none of the range yet", errNotYet, f.ks.id)
	}
	if !h.ours || h.applied == 0 || h.applied <= f.applied.Load() {
		return false, nil // Restore reports what is wrong with a foreign stream; an older one changes nothing here
	}
	if !h.hasDescriptor {
		return false, nil // range 0 before any split: it holds every key there is
	}
	if other, ok := f.store.claim(f.ks.id, h.descriptor); !ok {
		return false, fmt.Errorf("%w: a snapshot of %s, but this node's %s still holds keys of it (it has not applied the split yet)", errNotYet, h.descriptor, other)
	}
	return true, nil
}

// ReleaseClaim ends the claim CheckIncoming made on the incoming
// snapshot's span: its restore is over, or raft dropped it.
func (f *FSM) ReleaseClaim() { f.store.release(f.ks.id) }

// Outdated reports whether a snapshot, from its first bytes, is range id's
// birth snapshot or holds a span other than the range's now: then it is
// not what a replica that lacks the range should get (it would refuse an
// overlap, or hold keys the range gave away).
func (f *FSM) Outdated(head []byte) bool {
	h := readSnapshotHead(head, f.ks)
	if h.birth {
		return true
	}
	if !h.hasDescriptor {
		return false // not a raftkv snapshot, or range 0 before any split
	}
	now := f.span.Load()
	return h.descriptor.Start != now.Start || h.descriptor.End != now.End
}

// snapshotHead is what the first bytes of a snapshot stream say.
type snapshotHead struct {
	birth         bool   // a birth snapshot: no data
	ours          bool   // a raftkv snapshot (magic and applied index read)
	applied       uint64 // the raft index it was taken at
	descriptor    rangemap.Descriptor
	hasDescriptor bool // it starts with the range's descriptor (not range 0 before any split)
}

// readSnapshotHead parses what a snapshot stream starts with: the magic,
// the applied index and, first of the records (writeSnapshot puts it
// there), the range descriptor.
func readSnapshotHead(head []byte, ks keyspace) snapshotHead {
	if bytes.HasPrefix(head, birthMagic) {
		return snapshotHead{birth: true}
	}
	r := bufio.NewReader(bytes.NewReader(head))
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(r, magic); err != nil || !bytes.Equal(magic, snapMagic) {
		return snapshotHead{}
	}
	applied, err := binary.ReadUvarint(r)
	if err != nil {
		return snapshotHead{}
	}
	h := snapshotHead{ours: true, applied: applied}
	h.descriptor, h.hasDescriptor = firstRecordDescriptor(r, ks)
	return h
}

// firstRecordDescriptor reads the range descriptor a snapshot's records
// start with.
func firstRecordDescriptor(r *bufio.Reader, ks keyspace) (rangemap.Descriptor, bool) {
	if tag, err := r.ReadByte(); err != nil || tag != 1 {
		return rangemap.Descriptor{}, false
	}
	sr := &snapReader{r: r, crc: discardHash{}}
	k, err := sr.readBytes()
	if err != nil || !bytes.Equal(k, ks.local(metaRange)) {
		return rangemap.Descriptor{}, false
	}
	v, err := sr.readBytes()
	if err != nil {
		return rangemap.Descriptor{}, false
	}
	d, _, err := rangemap.DecodeDescriptor(v)
	return d, err == nil
}

// Initialized says whether this replica holds the range: its descriptor,
// from the split that made it here or from a snapshot.
func (f *FSM) Initialized() bool { return !f.span.Load().Empty() }

// claim reserves span d for range id's incoming snapshot, unless another
// range of the store holds keys of it, or has claimed some for a snapshot
// of its own being received or restored (two empty replicas, a parent's
// older snapshot and its child's, must not both write the same keys). It
// returns the range in the way.
func (s *Store) claim(id uint64, d rangemap.Descriptor) (rangemap.Descriptor, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for other, f := range s.ranges {
		if other == id {
			continue
		}
		if span := f.span.Load(); span != nil && span.Overlaps(d) {
			return span.Clone(), false
		}
		if c, ok := s.claims[other]; ok && c.Overlaps(d) {
			return c.Clone(), false
		}
	}
	if s.claims == nil {
		s.claims = map[uint64]rangemap.Descriptor{}
	}
	s.claims[id] = d
	return rangemap.Descriptor{}, true
}

func (s *Store) release(id uint64) {
	s.mu.Lock()
	delete(s.claims, id)
	s.mu.Unlock()
}

// isBirthSnapshot peeks at a stream for the birth magic.
func isBirthSnapshot(r *bufio.Reader) bool {
	head, err := r.Peek(len(birthMagic))
	return err == nil && bytes.Equal(head, birthMagic)
}

// restoreBirth takes a birth snapshot: the state is what the split left
// here (CheckIncoming refused it where there is none, but raft replays its
// latest snapshot at start-up too).
func (f *FSM) restoreBirth() error {
	if !f.Initialized() {
		return fmt.Errorf("fsm: restore: %w: range %d's birth snapshot, but this replica holds none of the range", errNotYet, f.ks.id)
	}
	f.logger.Info("birth snapshot: the range's state is what its split left here", "applied", f.applied.Load())
	return nil
}

// discardHash is a hash.Hash32 that hashes nothing (head parsing needs no
// checksum).
type discardHash struct{}

func (discardHash) Write(p []byte) (int, error) { return len(p), nil }
func (discardHash) Sum(b []byte) []byte         { return b }
func (discardHash) Reset()                      {}
func (discardHash) Size() int                   { return 4 }
func (discardHash) BlockSize() int              { return 1 }
func (discardHash) Sum32() uint32               { return 0 }

// errNotYet refuses a snapshot this replica cannot take yet.
var errNotYet = errors.New("snapshot refused for now")
