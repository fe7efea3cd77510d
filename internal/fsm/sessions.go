package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/kv"
)

// Sessions and locks in Badger:
//
//	"s" + session ID               → session record (below)
//	"h" + session ID + 0 + key     → (empty) the session may hold key
//	"d" + key                      → lock-delay: until (unix ns) + index
//	"m:sessions"                   → last index that created or destroyed a session
//
// The "h" index lists what a session may hold: an entry is added when the
// session acquires a key and removed when it releases it, but not when the
// key is deleted or rewritten by plain writes, which would cost a read per
// write. Invalidation therefore checks each listed key's holder.
//
// Lock-delay is replicated state, unlike Consul's per-server memory: its
// end is the invalidating command's time (stamped by the leader) plus the
// session's LockDelay, so every node refuses the same acquires, and a new
// leader keeps refusing them.
var (
	sessionPrefix = []byte("s")
	holdsPrefix   = []byte("h")
	delayPrefix   = []byte("d")
	metaSessions  = []byte("m:sessions")
)

const kindDelay = 'd' // expiry queue: lock-delays that ended

// Sessions live in range 0. A range other than 0 knows a session only by
// its locks: an acquire there was checked against range 0 by the node
// that proposed it, and when range 0 invalidates a session holding locks
// elsewhere, it records the release as pending ("P" + ID → the session's
// behaviour and lock-delay, from its first split on) until every other
// range has applied a session-release entry. A range that applied one
// keeps the session as gone ("x" + ID, range-local, for deadSessionTTL)
// and refuses a later acquire by it: an acquire that raced the
// invalidation is either before the release in the range's log (and
// released by it) or after it (and refused).
var (
	pendingPrefix = []byte("P")
	deadPrefix    = []byte("x")
)

const kindDead = 'x' // expiry queue: sessions a range let go of

// deadSessionTTL is how long a range remembers a session it let go of:
// far longer than an acquire checked before the invalidation can take to
// reach the range's log.
var deadSessionTTL = time.Hour

func (k keyspace) holdsKey(session, key string) []byte {
	b := make([]byte, 0, len(k.prefix)+len(holdsPrefix)+len(session)+1+len(key))
	b = append(append(append(b, k.prefix...), holdsPrefix...), session...)
	return append(append(b, 0), key...)
}

// Session record, version 1:
//
//	1 name node lockDelay:varint(ns) behavior ttl nchecks:uvarint check* create:uvarint modify:uvarint
//
// strings as bytes (len:uvarint data). The ID is the Badger key.
const sessionV1 = 1

// EncodeSession is the value of a legacy session-create op: the session
// record, without the ID (the op's Session carries it).
//
// Deprecated: legacy encoding, use EncodeEntry(SessionCreateEntry(s)).
func EncodeSession(s *kv.Session) []byte { return encodeSessionRecord(s) }

// encodeSessionRecord is the stored form of s, without its ID (the key).
func encodeSessionRecord(s *kv.Session) []byte {
	b := []byte{sessionV1}
	b = appendBytes(b, []byte(s.Name))
	b = appendBytes(b, []byte(s.Node))
	b = binary.AppendVarint(b, int64(s.LockDelay))
	b = appendBytes(b, []byte(s.Behavior))
	b = appendBytes(b, []byte(s.TTL))
	b = binary.AppendUvarint(b, uint64(len(s.NodeChecks)))
	for _, c := range s.NodeChecks {
		b = appendBytes(b, []byte(c))
	}
	b = binary.AppendUvarint(b, s.CreateIndex)
	return binary.AppendUvarint(b, s.ModifyIndex)
}

// DecodeSession parses a session record (EncodeSession's output). It never
// panics.
func DecodeSession(b []byte) (*kv.Session, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != sessionV1 {
		return nil, fmt.Errorf("%w: session record version %d", errCorrupt, v)
	}
	s := &kv.Session{
		Name:      string(d.bytes()),
		Node:      string(d.bytes()),
		LockDelay: time.Duration(d.varint()),
		Behavior:  string(d.bytes()),
		TTL:       string(d.bytes()),
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: %d checks in %d bytes", errCorrupt, n, len(d.b))
	}
	s.NodeChecks = make([]string, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		s.NodeChecks = append(s.NodeChecks, string(d.bytes()))
	}
	s.CreateIndex, s.ModifyIndex = d.uvarint(), d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in a session", errCorrupt, len(d.b))
	}
	return s, nil
}

// readSession returns the stored session id, or nil.
func readSession(txn *badger.Txn, id string) (*kv.Session, error) {
	item, err := txn.Get(prefixed(sessionPrefix, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read session %q: %w", id, err)
	}
	var s *kv.Session
	err = item.Value(func(v []byte) (err error) {
		s, err = DecodeSession(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read session %q: %w", id, err)
	}
	s.ID = id
	return s, nil
}

// lockDelayUntil is the end of key's lock-delay (unix ns), 0 if none.
func lockDelayUntil(txn *badger.Txn, key string) (int64, error) {
	item, err := txn.Get(prefixed(delayPrefix, key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var until int64
	err = item.Value(func(v []byte) error {
		if len(v) != 16 {
			return fmt.Errorf("lock-delay of %q has %d bytes", key, len(v))
		}
		until = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return until, err
}

// createSession applies a session create. unparsed is the body of a
// legacy entry that did not parse: refused as the versions that wrote it
// refused it, after the check that the ID is free.
func (b *batchState) createSession(w writer, idx uint64, spec *kv.Session, unparsed *LegacyBody) (*kv.Result, error) {
	var s kv.Session
	if spec != nil {
		s = *spec
	}
	existing, err := readSession(b.txn, s.ID)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return &kv.Result{Index: idx, Errors: []kv.OpError{{What: fmt.Sprintf("session %q already exists", s.ID)}}}, nil
	}
	if unparsed != nil {
		parsed, err := DecodeSession(unparsed.Bytes)
		if err != nil {
			return &kv.Result{Index: idx, Errors: []kv.OpError{{What: fmt.Sprintf("bad session: %v", err)}}}, nil
		}
		parsed.ID = s.ID
		s = *parsed
	}
	s.CreateIndex, s.ModifyIndex = idx, idx
	if err := w.Set(prefixed(sessionPrefix, s.ID), encodeSessionRecord(&s)); err != nil {
		return nil, err
	}
	b.sessionsChanged = true
	res := &kv.Result{Index: idx, OK: true, Entries: []kv.Entry{{Session: s.ID}}} // the ID, for the creator
	return res, w.Set(metaSessions, uintBytes(idx))
}

// destroySession invalidates session id; an unknown or already
// invalidated session is no error.
func (b *batchState) destroySession(w writer, idx uint64, id string) (*kv.Result, error) {
	res := &kv.Result{Index: idx, OK: true}
	existing, err := readSession(b.txn, id)
	if err != nil {
		return nil, err
	}
	if existing == nil {
		return res, nil
	}
	if err := b.invalidate(w, idx, existing); err != nil {
		return nil, err
	}
	if err := w.Delete(prefixed(sessionPrefix, id)); err != nil {
		return nil, err
	}
	if b.clockMode { // other ranges may hold its locks: they let go of it next
		if err := w.Set(prefixed(pendingPrefix, id), encodeRelease(existing)); err != nil {
			return nil, err
		}
	}
	b.sessionsChanged = true
	return res, w.Set(metaSessions, uintBytes(idx))
}

// invalidate applies s's behaviour to every key it holds and puts them under
// lock-delay, from this command's time.
func (b *batchState) invalidate(w writer, idx uint64, s *kv.Session) error {
	prefix := append(b.ks.localOf(holdsPrefix, s.ID), 0)
	var keys []string
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := b.txn.NewIterator(opts)
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Item().Key()[len(prefix):]))
	}
	it.Close()
	o := b.overlay()
	var held []string
	for _, key := range keys {
		e, err := o.get(key)
		if err != nil {
			return err
		}
		if e == nil || e.Session != s.ID {
			continue // deleted or released since; the index entry is stale
		}
		held = append(held, key)
		if s.Behavior == kv.BehaviorDelete {
			o.del(e)
			continue
		}
		released := *e
		released.Session = ""
		released.ModifyIndex = idx
		o.set(&released)
	}
	if err := b.flush(w, idx, o); err != nil {
		return err
	}
	for _, key := range keys {
		if err := w.Delete(b.ks.holdsKey(s.ID, key)); err != nil {
			return err
		}
	}
	delay := min(s.LockDelay, kv.MaxLockDelay)
	if delay <= 0 {
		return nil
	}
	until := b.now + int64(delay)
	for _, key := range held {
		v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(until)), idx)
		if err := w.Set(prefixed(delayPrefix, key), v); err != nil {
			return err
		}
		if err := b.enqueue(w, kindDelay, until, idx, key); err != nil {
			return err
		}
	}
	return nil
}

// Session returns a session and the sessions' query index; ok is false if
// it does not exist.
func (f *FSM) Session(id string) (s kv.Session, index uint64, ok bool, err error) {
	err = f.view(func(txn *badger.Txn) error {
		found, err := readSession(txn, id)
		if err != nil {
			return err
		}
		if found != nil {
			s, ok = *found, true
		}
		index, err = sessionsIndex(txn)
		return err
	})
	return s, index, ok, err
}

// Sessions returns every session (of node, if not empty), sorted by ID, and
// the sessions' query index.
func (f *FSM) Sessions(node string) ([]kv.Session, uint64, error) {
	out := []kv.Session{}
	var index uint64
	err := f.view(func(txn *badger.Txn) (err error) {
		if index, err = sessionsIndex(txn); err != nil {
			return err
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = sessionPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var s *kv.Session
			err := it.Item().Value(func(v []byte) (err error) {
				s, err = DecodeSession(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("read session %q: %w", it.Item().Key(), err)
			}
			s.ID = string(it.Item().Key()[len(sessionPrefix):])
			if node == "" || s.Node == node {
				out = append(out, *s)
			}
		}
		return nil
	})
	return out, index, err
}

// sessionsIndex is the index of the last session created or destroyed, or
// of the last snapshot restore; never 0.
func sessionsIndex(txn *badger.Txn) (uint64, error) {
	idx, err := readUint(txn, metaSessions)
	if err != nil {
		return 0, err
	}
	reaped, err := readUint(txn, metaReaped) // sessions are range 0's: unprefixed
	return max(idx, reaped, 1), err
}

// HeldKeys returns the keys each session holds now (sessions holding none
// are left out), each list sorted. The holds index may name keys since
// released or deleted (it is cleaned up only when the session ends), so
// each is checked against the key's current entry.
func (f *FSM) HeldKeys() (map[string][]string, error) {
	out := map[string][]string{}
	err := f.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = f.ks.local(holdsPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		o := f.overlay(txn)
		for it.Rewind(); it.Valid(); it.Next() {
			session, key, ok := strings.Cut(string(it.Item().Key()[len(opts.Prefix):]), "\x00")
			if !ok {
				return fmt.Errorf("malformed holds entry %q", it.Item().Key())
			}
			e, err := o.get(key)
			if err != nil {
				return err
			}
			if e != nil && e.Session == session {
				out[session] = append(out[session], key)
			}
		}
		return nil
	})
	return out, err
}

// releaseSession lets a range other than 0 go of a session range 0
// invalidated: its keys here are released (or deleted) with lock-delay,
// and the range remembers it as gone. Applying it again changes nothing
// more (the session holds nothing any more).
func (b *batchState) releaseSession(w writer, idx uint64, s *kv.Session) (*kv.Result, error) {
	if err := b.invalidate(w, idx, s); err != nil {
		return nil, err
	}
	if err := w.Set(b.ks.localOf(deadPrefix, s.ID), uintBytes(idx)); err != nil {
		return nil, err
	}
	return &kv.Result{Index: idx, OK: true}, b.enqueue(w, kindDead, b.now, idx, s.ID)
}

// encodeRelease is a pending release: the session's behaviour and
// lock-delay.
func encodeRelease(s *kv.Session) []byte {
	return binary.AppendVarint(appendString(nil, s.Behavior), int64(s.LockDelay))
}

// PendingReleases lists the sessions range 0 invalidated that other ranges
// may not have let go of yet (ID, Behavior and LockDelay set).
func (f *FSM) PendingReleases() ([]kv.Session, error) {
	var out []kv.Session
	err := f.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = pendingPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			d := decoder{b: v}
			s := kv.Session{ID: string(it.Item().Key()[len(pendingPrefix):]), Behavior: d.string(), LockDelay: time.Duration(d.varint())}
			if d.err != nil {
				return fmt.Errorf("pending release of %q: %w", s.ID, d.err)
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}
