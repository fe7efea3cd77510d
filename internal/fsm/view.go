package fsm

import (
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
		delete(f.closeWaiters, token)
		f.closeMu.Unlock()
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
	ch := f.closeWaiters[token]
	delete(f.closeWaiters, token)
	f.closeMu.Unlock()
	if ch != nil {
		ch <- &View{f: f, txn: f.db.NewTransaction(false), span: f.span.Load()}
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
