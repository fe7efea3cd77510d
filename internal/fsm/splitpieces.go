package fsm

import (
	"bytes"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// A split that moves more bookkeeping than one transaction holds (a range
// under keyed writes keeps an idempotency record per write of the last ten
// minutes) is applied on its own, in three steps, each of which a crash may
// cut short:
//
//  1. the records are copied to the new range (a WriteBatch, in several
//     commits). Cut short: nothing of the split is committed; its replay
//     copies them again (the parent is unchanged, so they are the same).
//  2. one transaction commits the rest of the split as the batch path
//     would (both descriptors, the new range's state, the parent's applied
//     index, floor and counts) and a marker naming the new range.
//  3. the records are deleted from the parent (a WriteBatch), records
//     before their expiry-queue entries (a record is found through its
//     queue entry), then the marker. Cut short: the next open of the range
//     finds the marker and deletes what is left (finishSplit).
//
// Readers are held off meanwhile (f.mu), as for any oversized entry.

// metaSplitClean, while set, names the range a split made whose records
// the parent has not deleted yet.
var metaSplitClean = []byte("m:splitclean")

// afterSplitCommit, set by tests only, runs between steps 2 and 3.
var afterSplitCommit func()

// splitPieces is what a split applied in pieces does outside its
// transaction.
type splitPieces struct {
	db    *badger.DB
	child uint64
	moves []move
}

// copy writes the moved records to the new range (step 1).
func (p *splitPieces) copy(moves []move) error {
	wb := p.db.NewWriteBatch()
	defer wb.Cancel()
	for _, m := range moves {
		if err := wb.Set(m.to, m.value); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// applySplitInPieces applies a split entry too big for a batch.
func (f *FSM) applySplitInPieces(l *raft.Log, e *Entry) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	txn := f.db.NewTransaction(true)
	defer txn.Discard()
	b := f.newBatch(txn)
	b.pieces = &splitPieces{db: f.db}
	b.noteForm(l.Data, e)
	res, err := b.apply(txn, l.Index, e, false)
	if err == nil && b.pieces.child != 0 {
		err = txn.Set(f.ks.local(metaSplitClean), uintBytes(b.pieces.child))
	}
	if err == nil {
		err = b.writeMeta(l.Index)
	}
	if err == nil {
		err = txn.Commit()
	}
	if err != nil {
		panic(fmt.Errorf("fsm: apply split at index %d in pieces: %w", l.Index, err)) // storage failure: fail-stop, replay on restart
	}
	if b.pieces.child != 0 {
		if afterSplitCommit != nil {
			afterSplitCommit() // tests: a crash here
		}
		if err := f.dropMoved(b.pieces.moves); err != nil {
			panic(fmt.Errorf("fsm: split at index %d: delete the moved records: %w", l.Index, err))
		}
	}
	f.publish(b, l.Index)
	f.logger.Info("applied a split in pieces", "index", l.Index, "records", len(b.pieces.moves))
	return res
}

// dropMoved deletes from the parent the records a split moved (not those
// it copied), records before queue entries, then the marker (step 3).
func (f *FSM) dropMoved(moves []move) error {
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	queue := f.ks.local(expiryPrefix)
	for _, pass := range []bool{false, true} {
		for _, m := range moves {
			if !m.keep && bytes.HasPrefix(m.from, queue) == pass {
				if err := wb.Delete(m.from); err != nil {
					return err
				}
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return f.db.Update(func(txn *badger.Txn) error { return txn.Delete(f.ks.local(metaSplitClean)) })
}

// finishSplit completes step 3 of a split cut short by a crash: at open,
// before raft replays anything. What is left to delete is what the parent
// holds about keys past its span's end (the new range's, copied in step 1).
func (f *FSM) finishSplit() error {
	var child uint64
	err := f.db.View(func(txn *badger.Txn) (err error) {
		child, err = readUint(txn, f.ks.local(metaSplitClean))
		return err
	})
	if err != nil || child == 0 {
		return err
	}
	span := f.span.Load()
	if span.End == "" {
		return fmt.Errorf("a split into range %d was cut short, but %s reaches the end of the keyspace", child, span)
	}
	txn := f.db.NewTransaction(false)
	defer txn.Discard()
	moves, _, _, err := f.newBatch(txn).planMoves(newKeyspace(child), rangemap.Descriptor{ID: child, Start: span.End})
	if err != nil {
		return err
	}
	f.logger.Warn("finishing a split a crash cut short: deleting the records it moved", "range", child, "records", len(moves))
	return f.dropMoved(moves)
}
