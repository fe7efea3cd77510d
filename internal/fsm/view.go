package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// View is the range exactly as it was right after a close was applied on
// this node: every write at or below the close's index, none after it.
// Views of several ranges closed at one index are one state of the keyspace
// (a read across ranges). Discard it soon: it holds a Badger read.
type View struct {
	f    *FSM
	txn  *badger.Txn
	span *rangemap.Descriptor
}

// AwaitClose registers for the view of the close with token (proposed by
// the caller): the channel receives it once this node's replica applies
// the close. cancel unregisters, and discards a view delivered meanwhile.
func (f *FSM) AwaitClose(token uint64) (views <-chan *View, cancel func()) {
	ch := make(chan *View, 1)
	f.closeMu.Lock()
	if f.closeWaiters == nil {
		f.closeWaiters = map[uint64]chan *View{}
	}
	f.closeWaiters[token] = ch
	f.closeMu.Unlock()
	return ch, func() {
		f.closeMu.Lock()
		defer f.closeMu.Unlock()
		delete(f.closeWaiters, token)
		select {
		case v := <-ch:
			v.Discard()
		default:
		}
	}
}

// deliverClose opens the view a waiter registered for token (if any) asks
// for: on raft's FSM goroutine, right after the commit that ends with the
// close, before the next batch.
func (f *FSM) deliverClose(token uint64) {
	f.closeMu.Lock()
	defer f.closeMu.Unlock() // with cancel's: a view is either received or drained
	if ch := f.closeWaiters[token]; ch != nil {
		delete(f.closeWaiters, token)
		ch <- &View{f: f, txn: f.db.NewTransaction(false), span: f.span.Load()} // buffered: never blocks
	}
}

// Read answers a query (see FSM.Read) from the view.
func (v *View) Read(q kv.Query) (*kv.QueryResult, error) {
	v.f.mu.RLock()
	defer v.f.mu.RUnlock()
	return state{ks: v.f.ks, txn: v.txn, span: v.span}.read(q)
}

// Discard releases the view.
func (v *View) Discard() { v.txn.Discard() }

// WriteMergedSnapshot writes, in the snapshot format, the keyspace the
// views show together (views of every range, closed at index at) as one
// range 0 over the whole keyspace: a backup of a cluster of ranges that
// restores into a cluster of one range. Every user key, tombstone and
// lock-delay is written as it is; each range's local bookkeeping
// (idempotency records, expiry queue, session holds) under range 0's
// names; and the counters merged: the largest clock and reaped mark, the
// sum of the idempotency records, and a floor of at least at, so that the
// restored cluster's indexes go on above every index in the backup.
func WriteMergedSnapshot(w io.Writer, views []*View, at uint64) error {
	sw := newStreamWriter(w, 0)
	var clock, reaped, floor, idem uint64
	floor = at
	merged := map[string]*uint64{string(metaClock): &clock, string(metaReaped): &reaped, string(metaFloor): &floor}
	dropped := map[string]bool{string(metaApplied): true, string(metaRange): true, string(metaOversized): true, string(metaIdemCount): true}
	for _, v := range views {
		v.f.mu.RLock()
		err := v.f.eachKey(v.txn, v.span, true, func(item *badger.Item) error {
			k := item.KeyCopy(nil)
			name := k
			if v.f.ks.prefix != nil && bytes.HasPrefix(k, v.f.ks.prefix) {
				name = k[len(v.f.ks.prefix):]
			}
			val, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read %q: %w", k, err)
			}
			if p, ok := merged[string(name)]; ok && len(val) == 8 {
				*p = max(*p, binary.BigEndian.Uint64(val))
				return nil
			}
			if string(name) == string(metaIdemCount) && len(val) == 8 {
				idem += binary.BigEndian.Uint64(val)
				return nil
			}
			if dropped[string(name)] || (v.f.ks.prefix != nil && string(name) == string(metaConfIndex)) {
				return nil
			}
			sw.record(name, val)
			return sw.err
		})
		v.f.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("fsm: merged snapshot of range %d: %w", v.f.ks.id, err)
		}
	}
	for _, m := range []struct {
		k []byte
		v uint64
	}{{metaClock, clock}, {metaReaped, reaped}, {metaFloor, floor}, {metaIdemCount, idem}} {
		sw.record(m.k, uintBytes(m.v))
	}
	return sw.finish()
}
