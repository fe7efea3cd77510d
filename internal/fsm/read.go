package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Reads see one Badger snapshot each, so an entry list and the index
// returned with it always belong together.
//
// The index of a query (X-Consul-Index) rises whenever its result could
// have changed and never goes backwards: it is the largest of the
// ModifyIndex of what the query sees, the tombstones of keys deleted under
// it, and the reaped mark (the newest tombstone ever dropped by age).

// Read answers a query from this state machine (its kind, key or prefix
// and separator; nothing else of it): the entries or keys and the query
// index. A missing key is an empty result, not an error.
func (f *FSM) Read(q kv.Query) (res *kv.QueryResult, err error) {
	err = f.view(func(txn *badger.Txn) error {
		res, err = f.at(txn).read(q)
		return err
	})
	return res, err
}

// Get returns the entry for key and its query index: the key's ModifyIndex
// when it exists. kv.ErrNotFound if absent.
func (f *FSM) Get(key string) (e kv.Entry, index uint64, err error) {
	err = f.view(func(txn *badger.Txn) error {
		e, index, err = f.at(txn).get(key)
		return err
	})
	return e, index, err
}

// List returns every entry under prefix, sorted by key, and the query index.
func (f *FSM) List(prefix string) (out []kv.Entry, index uint64, err error) {
	err = f.view(func(txn *badger.Txn) error {
		out, index, err = f.at(txn).list(prefix)
		return err
	})
	return out, index, err
}

// Keys returns the key names under prefix (see state.keys).
func (f *FSM) Keys(prefix, separator string) (out []string, index uint64, err error) {
	err = f.view(func(txn *badger.Txn) error {
		out, index, err = f.at(txn).keys(prefix, separator)
		return err
	})
	return out, index, err
}

// state is the range as one Badger read sees it: the current state (a
// read's view), or the state at a close (View).
type state struct {
	ks   keyspace
	txn  *badger.Txn
	span *rangemap.Descriptor
}

func (f *FSM) at(txn *badger.Txn) state { return state{ks: f.ks, txn: txn, span: f.span.Load()} }

func (a state) read(q kv.Query) (*kv.QueryResult, error) {
	res := &kv.QueryResult{Stale: q.Stale}
	var err error
	switch q.Kind {
	case kv.ReadGet:
		var e kv.Entry
		if e, res.Index, err = a.get(q.Key); err == nil {
			res.Entries = []kv.Entry{e}
		} else if errors.Is(err, kv.ErrNotFound) {
			err = nil
		}
	case kv.ReadList:
		res.Entries, res.Index, err = a.list(q.Key)
	case kv.ReadKeys:
		res.Keys, res.Index, err = a.keys(q.Key, q.Separator)
	default:
		err = fmt.Errorf("%w: unknown read kind %d", kv.ErrInvalid, q.Kind)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (a state) get(key string) (kv.Entry, uint64, error) {
	if !a.span.Contains(key) {
		return kv.Entry{}, 0, fmt.Errorf("%w: %q is not in %s", kv.ErrRangeMoved, key, a.span)
	}
	e, err := newOverlay(a.txn, a.ks, a.span).get(key)
	if err != nil {
		return kv.Entry{}, 0, err
	}
	if e != nil {
		return *e, e.ModifyIndex, nil
	}
	index, err := readUint(a.txn, a.ks.local(metaReaped))
	if err != nil {
		return kv.Entry{}, 0, err
	}
	tomb, err := readTomb(a.txn, key)
	if err != nil {
		return kv.Entry{}, 0, err
	}
	return kv.Entry{}, max(index, tomb, 1), fmt.Errorf("%w: %q", kv.ErrNotFound, key)
}

func (a state) list(prefix string) ([]kv.Entry, uint64, error) {
	var out []kv.Entry
	index, err := deletedIndex(a.txn, a.ks, a.span, prefix)
	if err != nil {
		return nil, 0, err
	}
	err = scanPrefix(a.txn, a.span, prefix, true, func(e kv.Entry) bool {
		out = append(out, e)
		index = max(index, e.ModifyIndex)
		return true
	})
	return out, index, err
}

// keys returns the key names under prefix. With a separator, keys are
// rolled up to the first separator after the prefix ("a/b/"), and the
// scan jumps over each rolled-up subtree instead of reading it. Changes
// inside a subtree cannot change the answer unless they delete it (a
// tombstone) or create it (a new first key), so the index needs nothing
// more.
func (a state) keys(prefix, separator string) ([]string, uint64, error) {
	var out []string
	index, err := deletedIndex(a.txn, a.ks, a.span, prefix)
	if err != nil {
		return nil, 0, err
	}
	lo, hi, ok := clip(prefix, *a.span)
	if !ok {
		return nil, index, nil
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = dataKey(prefix)
	it := a.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(dataKey(lo)); it.ValidForPrefix(opts.Prefix); {
		item := it.Item()
		key := string(item.Key()[len(dataPrefix):])
		if hi != "" && key >= hi {
			break
		}
		err := item.Value(func(v []byte) error {
			_, _, modify, err := decodeRecordHeader(v)
			index = max(index, modify)
			return err
		})
		if err != nil {
			return nil, 0, fmt.Errorf("keys %q: %w", key, err)
		}
		if separator != "" {
			if i := strings.Index(key[len(prefix):], separator); i >= 0 {
				rolled := key[:len(prefix)+i+len(separator)]
				out = append(out, rolled)
				next := rangemap.PrefixEnd(rolled)
				if next == "" {
					break
				}
				it.Seek(dataKey(next))
				continue
			}
		}
		out = append(out, key)
		it.Next()
	}
	return out, index, nil
}

// Evaluate runs a read-only command against the current state without
// changing anything; Result.Index is the applied index it saw.
func (f *FSM) Evaluate(c *kv.Command) (*kv.Result, error) {
	if !c.ReadOnly() {
		return nil, fmt.Errorf("%w: Evaluate takes read-only commands", kv.ErrInvalid)
	}
	span := f.span.Load()
	for i, op := range c.Ops {
		if op.Verb != kv.VerbGetTree && !span.Contains(op.Key) {
			return nil, fmt.Errorf("%w: op %d: %q is not in %s", kv.ErrRangeMoved, i, op.Key, span)
		}
	}
	var res *kv.Result
	err := f.view(func(txn *badger.Txn) (err error) {
		res, err = execute(f.overlay(txn), f.LastIndex(), c, false)
		return err
	})
	return res, err
}

// deletedIndex is the newest delete under prefix in span: its tombstones
// and the reaped mark. Never 0, so clients can always block on the result.
func deletedIndex(txn *badger.Txn, ks keyspace, span *rangemap.Descriptor, prefix string) (uint64, error) {
	index, err := readUint(txn, ks.local(metaReaped))
	if err != nil {
		return 0, err
	}
	lo, hi, ok := clip(prefix, *span)
	if !ok {
		return max(index, 1), nil
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefixed(tombPrefix, prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	end := prefixed(tombPrefix, hi)
	for it.Seek(prefixed(tombPrefix, lo)); it.ValidForPrefix(opts.Prefix); it.Next() {
		if hi != "" && bytes.Compare(it.Item().Key(), end) >= 0 {
			break
		}
		err := it.Item().Value(func(v []byte) error {
			if len(v) != 8 && len(v) != 16 {
				return fmt.Errorf("tombstone %q has %d bytes", it.Item().Key(), len(v))
			}
			index = max(index, binary.BigEndian.Uint64(v))
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return max(index, 1), nil
}

// readTomb returns the index of key's tombstone, 0 if there is none. A
// tombstone is the delete's index, then the key's LockIndex if it had one.
func readTomb(txn *badger.Txn, key string) (uint64, error) {
	item, err := txn.Get(prefixed(tombPrefix, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var idx uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 && len(v) != 16 {
			return fmt.Errorf("tombstone of %q has %d bytes", key, len(v))
		}
		idx = binary.BigEndian.Uint64(v)
		return nil
	})
	return idx, err
}

// overlay starts an overlay on a read of the range as it is.
func (f *FSM) overlay(txn *badger.Txn) *overlay { return newOverlay(txn, f.ks, f.span.Load()) }

// view runs fn in a read transaction, excluded from multi-commit changes.
func (f *FSM) view(fn func(txn *badger.Txn) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.View(fn); err != nil {
		return fmt.Errorf("fsm: read: %w", err)
	}
	return nil
}
