package fsm

import (
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/kv"
)

// Reads see one Badger snapshot each, so an entry list and the index returned
// with it always belong together.

// Get returns the entry for key and the query index: the key's ModifyIndex
// when it exists, the KV index otherwise. kv.ErrNotFound if absent.
func (f *FSM) Get(key string) (kv.Entry, uint64, error) {
	var e *kv.Entry
	var index uint64
	err := f.view(func(txn *badger.Txn) (err error) {
		if index, err = readKVIndex(txn); err != nil {
			return err
		}
		e, err = newOverlay(txn).get(key)
		return err
	})
	if err != nil {
		return kv.Entry{}, 0, err
	}
	if e == nil {
		return kv.Entry{}, index, fmt.Errorf("%w: %q", kv.ErrNotFound, key)
	}
	return *e, e.ModifyIndex, nil
}

// List returns every entry under prefix, sorted by key, and the KV index.
func (f *FSM) List(prefix string) ([]kv.Entry, uint64, error) {
	var out []kv.Entry
	var index uint64
	err := f.view(func(txn *badger.Txn) (err error) {
		if index, err = readKVIndex(txn); err != nil {
			return err
		}
		return scanPrefix(txn, prefix, true, func(e kv.Entry) bool {
			out = append(out, e)
			return true
		})
	})
	return out, index, err
}

// Keys returns the key names under prefix. With a separator, keys are rolled
// up to the first separator after the prefix ("a/b/"), and the scan jumps
// over each rolled-up subtree instead of reading it.
func (f *FSM) Keys(prefix, separator string) ([]string, uint64, error) {
	var out []string
	var index uint64
	err := f.view(func(txn *badger.Txn) (err error) {
		if index, err = readKVIndex(txn); err != nil {
			return err
		}
		start := prefix
		for {
			var next string
			err := scanFrom(txn, prefix, start, false, func(e kv.Entry) bool {
				if separator != "" {
					if i := strings.Index(e.Key[len(prefix):], separator); i >= 0 {
						rolled := e.Key[:len(prefix)+i+len(separator)]
						out = append(out, rolled)
						next = prefixEnd(rolled)
						return false
					}
				}
				out = append(out, e.Key)
				return true
			})
			if err != nil || next == "" {
				return err
			}
			start = next
		}
	})
	return out, index, err
}

// view runs fn in a read transaction, excluded from multi-commit changes.
func (f *FSM) view(fn func(txn *badger.Txn) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.View(fn); err != nil {
		return fmt.Errorf("fsm: read: %w", err)
	}
	return nil
}

// readKVIndex is the index a listing reports: it changes whenever any key
// changes, and is never 0 so that clients can always block on it.
func readKVIndex(txn *badger.Txn) (uint64, error) {
	v, err := readUint(txn, metaKVIndex)
	return max(v, 1), err
}

// prefixEnd is the smallest key greater than every key starting with p, or
// "" if there is none (p is all 0xff).
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}
