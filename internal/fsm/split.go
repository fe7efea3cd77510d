package fsm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Indexes. Until its first split a range hands out its raft indexes, as
// every release before ranges did. A split starts a second raft log (the
// new range's, from 1), so from the split on both halves count for
// themselves (clockMode): an entry's index is
//
//	max(floor + 1, clockIndex(entry time))
//
// where floor is the last index the range handed out. The entry's time is
// the leader's, in the log, so every replica computes the same index; the
// floor keeps it monotonic whatever the leaders' clocks do, and the clock
// keeps the ranges' indexes near each other, far above any raft index and
// below 2^53 (docs/RANGES.md).

// clockShift leaves room for 1024 entries per millisecond before the
// floor takes over.
const clockShift = 10

// clockIndex is the index a time in unix nanoseconds stands for.
func clockIndex(unixNano int64) uint64 {
	if unixNano <= 0 {
		return 0
	}
	return uint64(unixNano/1e6) << clockShift
}

// index is the index an entry at raft index idx and time t gets.
func (b *batchState) index(idx uint64, t int64) uint64 {
	if !b.clockMode {
		return idx
	}
	b.floor = max(b.floor+1, clockIndex(t))
	return b.floor
}

// close raises the floor to c.At: every later write of the range gets an
// index above it. Refused (OK false, Index: the floor) if a write already
// has an index above c.At, or while the range counts raft indexes (before
// its first split a range is alone, and nothing needs closing).
func (b *batchState) close(c *Close) *kv.Result {
	if !b.clockMode {
		return &kv.Result{Index: b.floor}
	}
	if b.floor > c.At {
		return &kv.Result{Index: b.floor}
	}
	b.floor = c.At
	return &kv.Result{Index: c.At, OK: true}
}

// LastIndex is the last index the range handed out: its applied raft
// index until its first split, its own count after.
func (f *FSM) LastIndex() uint64 {
	f.metaMu.Lock()
	defer f.metaMu.Unlock()
	if f.clockMode {
		return f.floor
	}
	return f.applied.Load()
}

// OnSplit sets what hears of every split the range applies, after its
// commit: the node starts the new range's group.
func (f *FSM) OnSplit(fn func(left, right rangemap.Descriptor)) { f.onSplit.Store(&fn) }

// OnRestored sets what hears of every snapshot the range restored (its
// span may have changed, or a new replica got its state), after it.
func (f *FSM) OnRestored(fn func()) { f.onRestored.Store(&fn) }

// split cuts the range at sp.Key. No user key moves: the new range owns
// the keys at and after sp.Key because its descriptor says so. What moves
// is range-local bookkeeping about those keys: their tombstones' and
// lock-delays' places in the expiry queue, the idempotency records of
// commands on them (with their queue entries), and session holds (locks
// move with their keys); both halves keep the sessions the range let go
// of. Both halves count their own indexes from here (clockMode), from the
// split's index.
//
// Up to maxSplitMoves records move in the batch's transaction. More (a
// range under keyed writes) and the split is applied on its own, in
// pieces (b.pieces, see applySplitInPieces).
func (b *batchState) split(w writer, idx uint64, sp *Split) (any, error) {
	keep, err := b.keptWhole()
	if err != nil {
		return nil, err
	}
	left, right, err := rangemap.Split(*b.span, sp.Key, sp.NewID, keep)
	if err != nil {
		return kv.Errorf(kv.ErrInvalid, "cannot split %s: %v", b.span, err), nil
	}
	left.Replicas, right.Replicas = sp.Replicas, sp.Replicas
	child := newKeyspace(sp.NewID)
	moves, moved, copied, err := b.planMoves(child, right)
	if err != nil {
		return nil, fmt.Errorf("split: bookkeeping to move: %w", err)
	}
	switch {
	case b.pieces != nil:
		if err := b.pieces.copy(moves); err != nil {
			return nil, fmt.Errorf("split: copy bookkeeping: %w", err)
		}
		b.pieces.child, b.pieces.moves = sp.NewID, moves
	case len(moves) > maxSplitMoves:
		return nil, fmt.Errorf("%d records to move: %w", len(moves), badger.ErrTxnTooBig) // applyRun sends it to applySplitInPieces
	default:
		for _, m := range moves {
			if err := w.Set(m.to, m.value); err != nil {
				return nil, err
			}
			if !m.keep {
				if err := w.Delete(m.from); err != nil {
					return nil, err
				}
			}
		}
	}
	b.idemCount -= int64(moved)

	for _, m := range []struct {
		k []byte
		v uint64
	}{{metaApplied, BirthIndex}, {metaReaped, b.reaped}, {metaIdemCount, uint64(moved + copied)}, {metaClock, uint64(b.now)}, {metaFloor, idx}} {
		if err := w.Set(child.local(m.k), uintBytes(m.v)); err != nil {
			return nil, err
		}
	}
	if err := w.Set(child.local(metaRange), rangemap.AppendDescriptor(nil, right)); err != nil {
		return nil, err
	}
	if err := w.Set(b.ks.local(metaRange), rangemap.AppendDescriptor(nil, left)); err != nil {
		return nil, err
	}
	b.span = &left
	b.floor, b.clockMode = idx, true
	b.splits = append(b.splits, [2]rangemap.Descriptor{left, right})
	return &kv.Result{Index: idx, OK: true}, nil
}

// metaRangeIDs, in range 0, is the last range ID handed out.
var metaRangeIDs = []byte("m:rangeids")

// newRangeID hands out the next range ID (range 0 only: misplaced refuses
// the entry elsewhere).
func (b *batchState) newRangeID(w writer) (*kv.Result, error) {
	v, err := readUint(b.txn, metaRangeIDs)
	if err != nil {
		return nil, err
	}
	return &kv.Result{Index: v + 1, OK: true}, w.Set(metaRangeIDs, uintBytes(v+1))
}

// keptWhole returns the prefixes kept whole in the range.
func (b *batchState) keptWhole() ([]string, error) {
	var out []string
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = keepPrefix
	it := b.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefixed(keepPrefix, b.span.Start)); it.ValidForPrefix(keepPrefix); it.Next() {
		p := string(it.Item().Key()[len(keepPrefix):])
		if !b.span.Contains(p) {
			break
		}
		out = append(out, p)
	}
	return out, nil
}

// keepWhole keeps a prefix in the range (or lets it go): refused if the
// range does not hold all of it (a boundary inside it already).
func (b *batchState) keepWhole(w writer, idx uint64, k *KeepWhole) (any, error) {
	if !b.span.Contains(k.Prefix) {
		return kv.Errorf(kv.ErrRangeMoved, "%q is not in %s", k.Prefix, b.span), nil
	}
	if !k.Keep {
		return &kv.Result{Index: idx, OK: true}, w.Delete(prefixed(keepPrefix, k.Prefix))
	}
	if end := rangemap.PrefixEnd(k.Prefix); b.span.End != "" && (end == "" || end > b.span.End) {
		return kv.Errorf(kv.ErrInvalid, "prefix %q is split already: %s ends at %q inside it", k.Prefix, b.span, b.span.End), nil
	}
	return &kv.Result{Index: idx, OK: true}, w.Set(prefixed(keepPrefix, k.Prefix), nil)
}

// maxSplitMoves bounds the bookkeeping a split moves in the transaction
// of its batch, so that the split stays one commit, all of it or none.
const maxSplitMoves = 1000

// move is one record of bookkeeping a split moves to the new range.
type move struct {
	from, to []byte
	value    []byte
	keep     bool // copy: the parent keeps it too
}

// planMoves lists what right's keys own in the parent's range-local
// state, to move to the child, and how many idempotency records move and
// how many are copied (records queued before the first split name no key:
// both halves keep those).
func (b *batchState) planMoves(child keyspace, right rangemap.Descriptor) (moves []move, moved, copied int, err error) {
	for _, kind := range []byte{kindTomb, kindDelay, kindIdem, kindDead} {
		prefix := []byte{expiryPrefix[0], kind}
		err := b.eachLocal(prefix, func(k, v []byte) (bool, error) {
			if len(k) < len(prefix)+16 {
				return false, fmt.Errorf("expiry entry %q too short", k)
			}
			t := int64(binary.BigEndian.Uint64(k[len(prefix):]))
			index := binary.BigEndian.Uint64(k[len(prefix)+8:])
			name := string(k[len(prefix)+16:])
			to := child.expiryKey(kind, t, index, name)
			switch {
			case kind == kindDead: // both halves remember the sessions let go of
				rec, err := b.get(b.ks.localOf(deadPrefix, name))
				if err != nil {
					return false, err
				}
				moves = append(moves, move{from: b.ks.local(k), to: to, keep: true})
				if rec != nil {
					moves = append(moves, move{from: b.ks.localOf(deadPrefix, name), to: child.localOf(deadPrefix, name), value: rec, keep: true})
				}
			case kind != kindIdem && right.Contains(name):
				moves = append(moves, move{from: b.ks.local(k), to: to})
			case kind == kindIdem && (len(v) == 0 || right.Contains(string(v))):
				rec, err := b.get(b.ks.localOf(idemPrefix, name))
				if err != nil {
					return false, err
				}
				keep := len(v) == 0
				moves = append(moves, move{from: b.ks.local(k), to: to, value: v, keep: keep})
				if rec != nil {
					moves = append(moves, move{from: b.ks.localOf(idemPrefix, name), to: child.localOf(idemPrefix, name), value: rec, keep: keep})
				}
				if keep {
					copied++
				} else {
					moved++
				}
			}
			return true, nil
		})
		if err != nil {
			return nil, 0, 0, err
		}
	}
	err = b.eachLocal(holdsPrefix, func(k, _ []byte) (bool, error) {
		if session, key, ok := cutHold(k); ok && right.Contains(key) {
			moves = append(moves, move{from: b.ks.holdsKey(session, key), to: child.holdsKey(session, key)})
		}
		return true, nil
	})
	return moves, moved, copied, err
}

// eachLocal calls fn with every range-local key under name (without the
// range's prefix) and its value, in key order, until fn returns false.
func (b *batchState) eachLocal(name []byte, fn func(k, v []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = b.ks.local(name)
	it := b.txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		more, err := fn(it.Item().KeyCopy(nil)[len(b.ks.prefix):], v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// get reads a raw key through the batch (nil if absent).
func (b *batchState) get(k []byte) ([]byte, error) {
	item, err := b.txn.Get(k)
	if err == badger.ErrKeyNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// cutHold splits a holds entry's name ("h" + session + 0 + key).
func cutHold(k []byte) (session, key string, ok bool) {
	rest := string(k[len(holdsPrefix):])
	for i := 0; i < len(rest); i++ {
		if rest[i] == 0 {
			return rest[:i], rest[i+1:], true
		}
	}
	return "", "", false
}

// Size counts the keys of the range and their stored size (keys and
// values, as Badger estimates them), reading the range's current state.
func (f *FSM) Size() (keys, bytes int64, err error) {
	err = f.view(func(txn *badger.Txn) error {
		span := f.span.Load()
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = dataPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		end := dataKey(span.End)
		for it.Seek(dataKey(span.Start)); it.ValidForPrefix(dataPrefix); it.Next() {
			if span.End != "" && string(it.Item().Key()) >= string(end) {
				break
			}
			keys++
			bytes += it.Item().EstimatedSize()
		}
		return nil
	})
	return keys, bytes, err
}

// Entries is how many log entries the range has applied since this node
// opened it (a write rate's source).
func (f *FSM) Entries() uint64 { return f.entries.Load() }

// ClockIndex is the first index of t's millisecond.
func ClockIndex(t time.Time) uint64 { return clockIndex(t.UnixNano()) }

// IndexTime is the millisecond an index stands for (the zero time for
// indexes below any clock's, such as raft indexes).
func IndexTime(index uint64) time.Time { return time.UnixMilli(int64(index >> clockShift)) }

// noteReplicas records a change of the range's raft configuration in its
// descriptor (replicas, and one more generation), so that the descriptor
// names the replicas the range has. Range 0 before its first split keeps
// no descriptor, as before ranges.
func (b *batchState) noteReplicas(w writer, data []byte) error {
	if b.ks.id == 0 && b.span.Generation == 0 {
		return nil
	}
	conf, err := decodeConfiguration(data)
	if err != nil {
		return nil // raft itself decoded it; nothing to record otherwise
	}
	d := b.span.Clone()
	d.Replicas = d.Replicas[:0]
	for _, srv := range conf.Servers {
		d.Replicas = append(d.Replicas, rangemap.Replica{Node: string(srv.ID), Voter: srv.Suffrage == raft.Voter})
	}
	if slices.Equal(d.Replicas, b.span.Replicas) {
		return nil
	}
	d.Generation++
	if err := w.Set(b.ks.local(metaRange), rangemap.AppendDescriptor(nil, d)); err != nil {
		return err
	}
	b.span = &d
	return nil
}

// decodeConfiguration is raft.DecodeConfiguration, which panics on what it
// cannot decode.
func decodeConfiguration(data []byte) (conf raft.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("undecodable configuration: %v", r)
		}
	}()
	return raft.DecodeConfiguration(data), nil
}
