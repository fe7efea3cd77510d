package raftstore

import (
	"context"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/kv"
)

// The Go API of the node: writes and reads of keys (routed to the range
// of their keys), locks, sessions, membership and snapshots (range 0's).

// WriteOption changes a Go API write.
type WriteOption func(*kv.Command)

// Apply runs a write command on the cluster (see kv.Command): proposed
// here if this node leads, forwarded to the leader otherwise.
func (s *RaftStore) Apply(ctx context.Context, cmd *kv.Command) (*kv.Result, error) {
	return s.ranges.Apply(ctx, cmd)
}

// Read answers a query, linearizably unless q.Stale (see kv.Query).
func (s *RaftStore) Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error) {
	return s.ranges.Read(ctx, q)
}

func (s *RaftStore) write(ctx context.Context, op kv.Op, opts []WriteOption) (*kv.Result, error) {
	cmd := &kv.Command{Ops: []kv.Op{op}}
	for _, o := range opts {
		o(cmd)
	}
	return s.ranges.Apply(ctx, cmd)
}

// Set writes key and returns its new ModifyIndex.
func (s *RaftStore) Set(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	res, err := s.write(ctx, kv.Op{Verb: kv.VerbSet, Key: key, Value: value}, opts)
	if err != nil {
		return 0, err
	}
	return res.Index, nil
}

// CompareAndSet writes key only if its ModifyIndex is modifyIndex (0: only
// if it does not exist). ErrCASMismatch otherwise.
func (s *RaftStore) CompareAndSet(ctx context.Context, key string, value []byte, modifyIndex uint64, opts ...WriteOption) (uint64, error) {
	res, err := s.write(ctx, kv.Op{Verb: kv.VerbCAS, Key: key, Value: value, Index: modifyIndex}, opts)
	if err != nil {
		return 0, err
	}
	if !res.OK {
		return 0, casError(res)
	}
	return res.Index, nil
}

// Delete removes key; deleting an absent key succeeds.
func (s *RaftStore) Delete(ctx context.Context, key string) error {
	_, err := s.write(ctx, kv.Op{Verb: kv.VerbDelete, Key: key}, nil)
	return err
}

// DeleteTree removes every key starting with prefix.
func (s *RaftStore) DeleteTree(ctx context.Context, prefix string) error {
	_, err := s.write(ctx, kv.Op{Verb: kv.VerbDeleteTree, Key: prefix}, nil)
	return err
}

// CompareAndDelete removes key only if its ModifyIndex is modifyIndex.
func (s *RaftStore) CompareAndDelete(ctx context.Context, key string, modifyIndex uint64) error {
	res, err := s.write(ctx, kv.Op{Verb: kv.VerbDeleteCAS, Key: key, Index: modifyIndex}, nil)
	if err != nil {
		return err
	}
	if !res.OK {
		return casError(res)
	}
	return nil
}

func casError(res *kv.Result) error {
	if len(res.Errors) > 0 {
		return fmt.Errorf("%w: %s", kv.ErrCASMismatch, res.Errors[0].What)
	}
	return kv.ErrCASMismatch
}

// Acquire writes key and takes its lock for session if the lock is free
// (or already the session's): true if it did. Under lock-delay, or held by
// another session: false. An unknown session: an error (kv.ErrSession).
func (s *RaftStore) Acquire(ctx context.Context, key string, value []byte, session string, opts ...WriteOption) (bool, error) {
	return s.lockOp(ctx, kv.Op{Verb: kv.VerbLock, Key: key, Value: value, Session: session}, opts)
}

// Release writes key and frees its lock if session holds it: true if it did.
func (s *RaftStore) Release(ctx context.Context, key string, value []byte, session string, opts ...WriteOption) (bool, error) {
	return s.lockOp(ctx, kv.Op{Verb: kv.VerbUnlock, Key: key, Value: value, Session: session}, opts)
}

func (s *RaftStore) lockOp(ctx context.Context, op kv.Op, opts []WriteOption) (bool, error) {
	res, err := s.write(ctx, op, opts)
	if err != nil {
		return false, err
	}
	if !res.OK && len(res.Errors) > 0 && res.Errors[0].InvalidSession {
		return false, kv.Errorf(kv.ErrSession, "%s", res.Errors[0].What)
	}
	return res.OK, nil
}

// ReadOption changes how the Go API reads.
type ReadOption func(*kv.Query)

// Stale reads this node's local state: fast, available without a leader,
// and possibly behind.
func Stale() ReadOption { return func(q *kv.Query) { q.Stale = true } }

func (s *RaftStore) query(ctx context.Context, q kv.Query, opts []ReadOption) (*kv.QueryResult, error) {
	for _, o := range opts {
		o(&q)
	}
	return s.ranges.Read(ctx, q)
}

// Get returns one key; ErrNotFound if it does not exist.
func (s *RaftStore) Get(ctx context.Context, key string, opts ...ReadOption) (kv.Entry, error) {
	res, err := s.query(ctx, kv.Query{Kind: kv.ReadGet, Key: key}, opts)
	if err != nil {
		return kv.Entry{}, err
	}
	if len(res.Entries) == 0 {
		return kv.Entry{}, fmt.Errorf("%w: %q", kv.ErrNotFound, key)
	}
	return res.Entries[0], nil
}

// List returns every entry whose key starts with prefix, sorted by key.
func (s *RaftStore) List(ctx context.Context, prefix string, opts ...ReadOption) ([]kv.Entry, error) {
	res, err := s.query(ctx, kv.Query{Kind: kv.ReadList, Key: prefix}, opts)
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

// Keys returns the key names under prefix, rolled up at separator if given.
func (s *RaftStore) Keys(ctx context.Context, prefix, separator string, opts ...ReadOption) ([]string, error) {
	res, err := s.query(ctx, kv.Query{Kind: kv.ReadKeys, Key: prefix, Separator: separator}, opts)
	if err != nil {
		return nil, err
	}
	return res.Keys, nil
}

// CreateSession creates a session and returns its ID (see
// kv.Session; empty fields take Consul's defaults, NodeChecks nil: none).
func (s *RaftStore) CreateSession(ctx context.Context, spec kv.Session) (string, error) {
	return s.sessions.CreateSession(ctx, spec)
}

// DestroySession invalidates a session: the keys it holds are released or
// deleted (its behaviour). An unknown session is not an error.
func (s *RaftStore) DestroySession(ctx context.Context, id string) error {
	return s.sessions.DestroySession(ctx, id)
}

// RenewSession restarts a session's TTL and returns the session.
func (s *RaftStore) RenewSession(ctx context.Context, id string) (kv.Session, error) {
	return s.sessions.RenewSession(ctx, id)
}

// Join adds a server as a non-voter, which the leader promotes to voter
// once it has been healthy for Config.ServerStabilizationTime (a no-op if
// id is already a member at addr). Followers forward it to the leader.
func (s *RaftStore) Join(ctx context.Context, id, addr string) error {
	return s.group.Membership().Join(ctx, id, addr)
}

// Remove removes a server from the cluster.
func (s *RaftStore) Remove(ctx context.Context, id string) error {
	return s.group.Membership().Remove(ctx, id)
}

// TransferLeadership hands leadership to the voter id, or to any voter
// raft picks if id is empty.
func (s *RaftStore) TransferLeadership(ctx context.Context, id string) error {
	return s.group.Membership().TransferLeadership(ctx, id)
}

// Configuration returns the cluster membership as this node knows it.
func (s *RaftStore) Configuration(ctx context.Context) (kv.Configuration, error) {
	return s.group.Membership().Configuration(ctx)
}

// SaveSnapshot writes a snapshot of the whole state (Consul's archive
// layout) to w, linearizably unless stale.
func (s *RaftStore) SaveSnapshot(ctx context.Context, w io.Writer, stale bool) error {
	snap, err := s.ranges.OpenSnapshot(ctx, stale)
	if err != nil {
		return err
	}
	defer snap.Close()
	if _, err := io.Copy(w, snap); err != nil {
		return fmt.Errorf("raftstore: send snapshot: %w", err)
	}
	return nil
}

// RestoreSnapshot replaces the state of the whole cluster with a snapshot
// taken by SaveSnapshot (on this cluster or another one).
func (s *RaftStore) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	return s.ranges.RestoreSnapshot(ctx, r)
}
