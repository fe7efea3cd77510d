package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// overlay evaluates one command against Badger without touching it: reads go
// through the overlay's own pending changes first, writes are kept until the
// whole command has passed its checks. A failed command therefore leaves no
// trace even though it shares a Badger transaction with the rest of its raft
// batch.
type overlay struct {
	txn     *badger.Txn
	ks      keyspace
	span    *rangemap.Descriptor // the keys the range holds
	pending map[string]*kv.Entry // nil entry: deleted
	order   []string             // first-touch order, so flushing is deterministic
	now     int64                // the command's time (unix ns): lock-delays end by it

	lockIndex   map[string]uint64 // LockIndex of deleted keys, for their tombstones
	held, freed [][2]string       // (session, key) acquired and released
}

func newOverlay(txn *badger.Txn, ks keyspace, span *rangemap.Descriptor) *overlay {
	return &overlay{txn: txn, ks: ks, span: span, pending: make(map[string]*kv.Entry), lockIndex: make(map[string]uint64)}
}

func (o *overlay) get(key string) (*kv.Entry, error) {
	if e, ok := o.pending[key]; ok {
		return e, nil
	}
	item, err := o.txn.Get(dataKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", key, err)
	}
	e := &kv.Entry{Key: key}
	if err := item.Value(func(v []byte) error { return decodeRecord(v, e) }); err != nil {
		return nil, fmt.Errorf("read %q: %w", key, err)
	}
	return e, nil
}

func (o *overlay) set(e *kv.Entry) { o.touch(e.Key); o.pending[e.Key] = e }

// del deletes e's key, remembering its LockIndex for the tombstone.
func (o *overlay) del(e *kv.Entry) {
	o.touch(e.Key)
	o.pending[e.Key] = nil
	if e.LockIndex > 0 {
		o.lockIndex[e.Key] = e.LockIndex
	} else {
		delete(o.lockIndex, e.Key)
	}
}

// created returns a new entry for key, which does not exist: a key deleted
// before continues its LockIndex (from its tombstone, or from a delete
// earlier in this command), so (key, LockIndex) never repeats while the
// tombstone lives.
func (o *overlay) created(key string, idx uint64) (*kv.Entry, error) {
	e := &kv.Entry{Key: key, CreateIndex: idx, ModifyIndex: idx}
	if li, ok := o.lockIndex[key]; ok {
		e.LockIndex = li
		return e, nil
	}
	item, err := o.txn.Get(prefixed(tombPrefix, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tombstone of %q: %w", key, err)
	}
	err = item.Value(func(v []byte) error {
		if len(v) == 16 {
			e.LockIndex = binary.BigEndian.Uint64(v[8:])
		}
		return nil
	})
	return e, err
}

func (o *overlay) touch(key string) {
	if _, ok := o.pending[key]; !ok {
		o.order = append(o.order, key)
	}
}

// list returns the live entries under prefix, sorted by key; values are
// only copied when withValues is set.
func (o *overlay) list(prefix string, withValues bool) ([]kv.Entry, error) {
	var out []kv.Entry
	seen := make(map[string]bool)
	err := scanPrefix(o.txn, o.span, prefix, withValues, func(e kv.Entry) bool {
		if p, ok := o.pending[e.Key]; ok {
			seen[e.Key] = true
			if p != nil {
				out = append(out, *p)
			}
			return true
		}
		out = append(out, e)
		return true
	})
	if err != nil {
		return nil, err
	}
	added := false
	for k, p := range o.pending {
		if p != nil && !seen[k] && strings.HasPrefix(k, prefix) && o.span.Contains(k) {
			out = append(out, *p)
			added = true
		}
	}
	if added {
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	}
	return out, nil
}

// execute runs c at raft index idx. With force set the checks are skipped
// and every write happens: used only to finish an oversized command whose
// first run already passed its checks (see applyOversized).
func execute(o *overlay, idx uint64, c *kv.Command, force bool) (*kv.Result, error) {
	res := &kv.Result{Index: idx, OK: true}
	fail := func(i int, format string, args ...any) {
		res.Errors = append(res.Errors, kv.OpError{OpIndex: i, What: fmt.Sprintf(format, args...)})
	}
	for i, op := range c.Ops {
		var old *kv.Entry
		var err error
		if op.Verb != kv.VerbGetTree && op.Verb != kv.VerbDeleteTree {
			if old, err = o.get(op.Key); err != nil {
				return nil, err
			}
		}
		switch op.Verb {
		case kv.VerbSet, kv.VerbCAS:
			if op.Verb == kv.VerbCAS && !force {
				if op.Index == 0 && old != nil {
					fail(i, "key %q already exists", op.Key)
					continue
				}
				if op.Index != 0 && (old == nil || old.ModifyIndex != op.Index) {
					fail(i, "current modify index %d does not match %d", modifyIndex(old), op.Index)
					continue
				}
			}
			e, err := o.write(old, op, idx)
			if err != nil {
				return nil, err
			}
			o.set(e)
			res.Entries = append(res.Entries, withoutValue(*e))
		case kv.VerbLock:
			if !force {
				ok, err := o.checkLock(i, op, old, fail, res)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
			}
			e, err := o.write(old, op, idx)
			if err != nil {
				return nil, err
			}
			if old == nil || old.Session != op.Session {
				e.LockIndex++
				e.Session = op.Session
				o.held = append(o.held, [2]string{op.Session, op.Key})
			}
			o.set(e)
			res.Entries = append(res.Entries, withoutValue(*e))
		case kv.VerbUnlock:
			if old == nil || old.Session != op.Session {
				if !force {
					fail(i, "failed to unlock key %q, lock isn't held, or is held by another session", op.Key)
				}
				continue
			}
			e, err := o.write(old, op, idx)
			if err != nil {
				return nil, err
			}
			e.Session = ""
			o.freed = append(o.freed, [2]string{op.Session, op.Key})
			o.set(e)
			res.Entries = append(res.Entries, withoutValue(*e))
		case kv.VerbCheckSession:
			if old == nil {
				fail(i, "failed to check session, key %q doesn't exist", op.Key)
				continue
			}
			if old.Session != op.Session {
				fail(i, "failed session check for key %q, current session %q != %q", op.Key, old.Session, op.Session)
				continue
			}
			res.Entries = append(res.Entries, withoutValue(*old))
		case kv.VerbGet:
			if old == nil {
				fail(i, "key %q doesn't exist", op.Key)
				continue
			}
			res.Entries = append(res.Entries, *old)
		case kv.VerbGetOrEmpty:
			if old == nil {
				res.Entries = append(res.Entries, kv.Entry{Key: op.Key, Flags: op.Flags, Session: op.Session, ModifyIndex: op.Index})
				continue
			}
			res.Entries = append(res.Entries, *old)
		case kv.VerbGetTree:
			entries, err := o.list(op.Key, true)
			if err != nil {
				return nil, err
			}
			res.Entries = append(res.Entries, entries...)
		case kv.VerbCheckIndex:
			if old == nil || old.ModifyIndex != op.Index {
				fail(i, "current modify index %d does not match %d", modifyIndex(old), op.Index)
				continue
			}
			res.Entries = append(res.Entries, withoutValue(*old))
		case kv.VerbCheckNotExists:
			if old != nil {
				fail(i, "key %q exists", op.Key)
			}
		case kv.VerbDelete:
			if old != nil {
				o.del(old)
			}
		case kv.VerbDeleteTree:
			entries, err := o.list(op.Key, false)
			if err != nil {
				return nil, err
			}
			for j := range entries {
				o.del(&entries[j])
			}
		case kv.VerbDeleteCAS:
			if old == nil {
				continue // Consul: deleting an absent key with cas succeeds
			}
			if old.ModifyIndex != op.Index && !force {
				fail(i, "current modify index %d does not match %d", old.ModifyIndex, op.Index)
				continue
			}
			o.del(old)
		default:
			fail(i, "unknown verb %d", op.Verb)
		}
	}
	if len(res.Errors) > 0 && !force {
		return &kv.Result{Index: idx, Errors: res.Errors}, nil
	}
	res.Errors = nil
	return res, nil
}

// write returns the entry op makes of old (nil: absent): its value and
// flags, a new ModifyIndex, and the lock fields kept (plain writes ignore
// locks, as in Consul).
func (o *overlay) write(old *kv.Entry, op kv.Op, idx uint64) (*kv.Entry, error) {
	var e *kv.Entry
	if old == nil {
		var err error
		if e, err = o.created(op.Key, idx); err != nil {
			return nil, err
		}
	} else {
		cp := *old
		e = &cp
	}
	e.Value, e.Flags, e.ModifyIndex = op.Value, op.Flags, idx
	return e, nil
}

// sessionValid says whether a session may acquire: in range 0, whether it
// exists; elsewhere, whether the range has not let go of it (the node that
// proposed the acquire checked range 0; see sessions.go).
func (o *overlay) sessionValid(id string) (bool, error) {
	if o.ks.id != 0 {
		_, err := o.txn.Get(o.ks.localOf(deadPrefix, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return true, nil
		}
		return false, err
	}
	s, err := readSession(o.txn, id)
	return s != nil, err
}

// checkLock decides whether op may acquire old's key, failing it otherwise:
// the session must exist, and a lock held by another session or under
// lock-delay is not taken.
func (o *overlay) checkLock(i int, op kv.Op, old *kv.Entry, fail func(int, string, ...any), res *kv.Result) (bool, error) {
	valid, err := o.sessionValid(op.Session)
	if err != nil {
		return false, err
	}
	if !valid {
		res.Errors = append(res.Errors, kv.OpError{OpIndex: i, What: fmt.Sprintf("invalid session %q", op.Session), InvalidSession: true})
		return false, nil
	}
	if old != nil && old.Session == op.Session {
		return true, nil // held already: only the value changes
	}
	if old != nil && old.Session != "" {
		fail(i, "failed to lock key %q, lock is already held", op.Key)
		return false, nil
	}
	until, err := lockDelayUntil(o.txn, op.Key)
	if err != nil {
		return false, err
	}
	if until > o.now {
		fail(i, "failed to lock key %q due to lock delay", op.Key)
		return false, nil
	}
	return true, nil
}

// changed reports whether flushing the overlay would change anything.
func (o *overlay) changed() bool { return len(o.order) > 0 }

func modifyIndex(e *kv.Entry) uint64 {
	if e == nil {
		return 0
	}
	return e.ModifyIndex
}

func withoutValue(e kv.Entry) kv.Entry { e.Value = nil; return e }

// scanPrefix calls fn for every stored key under prefix that span holds,
// in key order, until fn returns false.
func scanPrefix(txn *badger.Txn, span *rangemap.Descriptor, prefix string, withValues bool, fn func(kv.Entry) bool) error {
	lo, hi, ok := clip(prefix, *span)
	if !ok {
		return nil
	}
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = withValues
	opts.Prefix = dataKey(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	end := dataKey(hi)
	for it.Seek(dataKey(lo)); it.ValidForPrefix(opts.Prefix); it.Next() {
		item := it.Item()
		if hi != "" && bytes.Compare(item.Key(), end) >= 0 {
			return nil
		}
		e := kv.Entry{Key: string(bytes.TrimPrefix(item.Key(), dataPrefix))}
		decode := func(v []byte) error { return (&decoder{b: v}).recordHeader(&e) }
		if withValues {
			decode = func(v []byte) error { return decodeRecord(v, &e) }
		}
		if err := item.Value(decode); err != nil {
			return fmt.Errorf("scan %q: %w", e.Key, err)
		}
		if !fn(e) {
			return nil
		}
	}
	return nil
}
