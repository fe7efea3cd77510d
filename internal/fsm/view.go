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

// View is the range exactly as it was when its last index was at a given
// index: every write at or below it, none after it. Views of several ranges
// at one index are one state of the keyspace (a read across ranges).
// Discard it soon: it holds a Badger read.
type View struct {
	f    *FSM
	txn  *badger.Txn
	span *rangemap.Descriptor
}

type viewWaiter struct {
	at uint64
	ch chan *View
}

// AwaitAt registers for the view of the range at index at, which this
// node's replica captures right before it applies the first entry whose
// index is past at, or right after a close at at (so: register, then
// close). The channel receives the view, or nil if the replica was past
// at already when it came to capture it (ask again, at a later index).
// cancel unregisters, and discards a view delivered meanwhile.
func (f *FSM) AwaitAt(at uint64) (views <-chan *View, cancel func()) {
	w := &viewWaiter{at: at, ch: make(chan *View, 1)}
	f.viewMu.Lock()
	if f.viewWaiters == nil {
		f.viewWaiters = map[*viewWaiter]bool{}
	}
	f.viewWaiters[w] = true
	f.waiting.Add(1)
	f.viewMu.Unlock()
	return w.ch, func() {
		f.viewMu.Lock()
		defer f.viewMu.Unlock()
		if f.viewWaiters[w] {
			delete(f.viewWaiters, w)
			f.waiting.Add(-1)
		}
		select {
		case v := <-w.ch:
			if v != nil {
				v.Discard()
			}
		default:
		}
	}
}

// nextIndex is the index e would take if applied now (ok false: it takes
// none, or the range hands out raft indexes, which no read waits on).
func (b *batchState) nextIndex(e *Entry) (uint64, bool) {
	if !b.clockMode || e.Kind == KindClose {
		return 0, false
	}
	t := max(b.now, e.Time.UnixNano())
	if e.Time.IsZero() {
		t = b.now
	}
	return max(b.floor+1, clockIndex(t)), true
}

// wantsViewBelow says whether a read waits for the range at an index
// below next.
func (f *FSM) wantsViewBelow(next uint64) bool {
	if f.waiting.Load() == 0 {
		return false
	}
	f.viewMu.Lock()
	defer f.viewMu.Unlock()
	for w := range f.viewWaiters {
		if w.at < next {
			return true
		}
	}
	return false
}

// captureViews gives the reads waiting at an index below next the range
// as it is now (committed: on raft's FSM goroutine, between runs): a view,
// or nil to a read whose index the range is past already.
func (f *FSM) captureViews(next uint64) {
	f.viewMu.Lock()
	defer f.viewMu.Unlock()
	last := f.LastIndex()
	for w := range f.viewWaiters {
		if w.at >= next {
			continue
		}
		delete(f.viewWaiters, w)
		f.waiting.Add(-1)
		if last > w.at {
			w.ch <- nil
			continue
		}
		w.ch <- &View{f: f, txn: f.db.NewTransaction(false), span: f.span.Load()}
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
	dropped := map[string]bool{string(metaApplied): true, string(metaRange): true, string(metaOversized): true, string(metaIdemCount): true, string(metaLogVersion): true}
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
