package raftstore

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/watch"
	"github.com/raftkv/raftkv/kv"
)

// leadership tracks whether this node may serve reads as leader: after
// winning an election, the commit index is only trustworthy once an entry
// of the new term has been applied (raft's Barrier); until then CommitIndex
// may lag entries the previous leader acknowledged. readyTerm is the term
// in which that happened, and reads check that the term did not change
// around them, so they do not depend on when raft's notifications arrive.
type leadership struct {
	mu        sync.Mutex
	epoch     uint64        // bumped on every notification
	readyTerm uint64        // term whose barrier is applied; 0: none
	signal    chan struct{} // closed and replaced on every change
}

// signalLocked wakes everyone waiting for a change; s.leader.mu is held.
func (s *RaftStore) signalLocked() {
	close(s.leader.signal)
	s.leader.signal = make(chan struct{})
}

// watchLeadership runs until raft has stopped, not just until Close starts:
// raft blocks on NotifyCh, and it steps down (notifying) while shutting down.
func (s *RaftStore) watchLeadership(notify <-chan bool) {
	for {
		select {
		case <-s.raftDone:
			return
		case isLeader := <-notify:
			s.metrics.leaderChanges.Inc()
			s.leader.mu.Lock()
			s.leader.epoch++
			epoch := s.leader.epoch
			s.leader.readyTerm = 0
			s.signalLocked()
			s.leader.mu.Unlock()
			if isLeader {
				go s.barrier(epoch)
				if s.ctx.Err() == nil {
					s.pilot.Start()
				}
			} else {
				s.sessions.Step()
				s.pilot.Stop()
			}
			s.logger.Info("leadership changed", "leader", isLeader)
		}
	}
}

// barrier commits an entry of the current term, retrying for as long as
// this node stays leader of the same epoch (a barrier refused during a
// leadership transfer that then fails must not leave reads stuck).
func (s *RaftStore) barrier(epoch uint64) {
	backoff := 10 * time.Millisecond
	for {
		term := s.raft.CurrentTerm()
		err := s.raft.Barrier(0).Error()
		s.leader.mu.Lock()
		if s.leader.epoch != epoch || !s.isLeader() {
			s.leader.mu.Unlock()
			return
		}
		if err == nil && s.raft.CurrentTerm() == term {
			s.leader.readyTerm = term
			s.signalLocked()
			s.leader.mu.Unlock()
			s.leadSessions() // everything committed before this term is applied
			return
		}
		s.leader.mu.Unlock()
		s.logger.Debug("leader barrier failed, retrying", "err", err)
		select {
		case <-time.After(backoff):
		case <-s.raftDone:
			return
		}
		backoff = min(backoff*2, time.Second)
	}
}

// readyTerm waits until this node leads in a term whose barrier has been
// applied, and returns that term.
func (s *RaftStore) readyTerm(ctx context.Context) (uint64, error) {
	for {
		s.leader.mu.Lock()
		ready, signal := s.leader.readyTerm, s.leader.signal
		s.leader.mu.Unlock()
		if !s.isLeader() {
			return 0, fmt.Errorf("%w: this node is not the leader", kv.ErrNoLeader)
		}
		if ready != 0 && ready == s.raft.CurrentTerm() {
			return ready, nil
		}
		select {
		case <-signal:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: new leader not ready: %v", kv.ErrNoLeader, ctx.Err())
		case <-s.raftDone:
			return 0, kv.ErrClosed
		}
	}
}

// leaderReadIndex is ReadIndex on the leader: the index a linearizable read
// must wait for. Every state-changing entry at or below it is committed.
// A follower asking on behalf of its reads vouches for itself: its term,
// read after those reads arrived, counts as one answer of the leadership
// round (see verifier).
func (s *RaftStore) leaderReadIndex(ctx context.Context, asker *peerrpc.Voucher) (uint64, error) {
	term, err := s.readyTerm(ctx)
	if err != nil {
		return 0, err
	}
	commit := s.raft.CommitIndex()
	if err := s.verifier.verify(ctx, term, asker); err != nil {
		return 0, fmt.Errorf("%w: leadership not confirmed: %v", kv.ErrNoLeader, err)
	}
	// Leader in term at both ends (a term cannot be led twice): the commit
	// index was read while leading with the barrier applied.
	if s.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: leadership changed during read", kv.ErrNoLeader)
	}
	return s.lastFSMEntry(commit), nil
}

// lastFSMEntry steps back from a committed index over entries the FSM never
// sees (noops, barriers), so that waiting for the FSM to reach the result
// cannot hang on an entry that will never be applied to it.
func (s *RaftStore) lastFSMEntry(index uint64) uint64 {
	applied := s.fsm.AppliedIndex()
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := s.logs.GetLog(i, &l); err != nil {
			return i // compacted or missing: wait for the index itself
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return min(index, applied)
}

// readIndex returns the index this node must have applied before a
// linearizable read: computed locally on the leader, asked of the leader on
// a follower. A read changes nothing, so it is retried through elections
// until the context ends.
func (s *RaftStore) readIndex(ctx context.Context) (uint64, error) {
	var idx uint64
	err := s.onLeader(ctx, func() (err error) {
		idx, err = s.leaderReadIndex(ctx, nil)
		return err
	}, func(ep leaderwatch.Epoch) (err error) {
		idx, err = s.followerReads.do(ctx, func() (uint64, error) {
			s.metrics.forwarded.WithLabelValues("readindex").Inc()
			cctx, cancel := peerContext(s.ctx, ep, s.peerTimeout())
			defer cancel()
			// The term is read here, after every read of this round arrived.
			return s.peers.ReadIndex(cctx, ep.Leader, peerrpc.Voucher{ID: s.id, Term: s.raft.CurrentTerm()})
		})
		return err
	})
	return idx, err
}

// waitApplied blocks until the FSM has applied index.
func (s *RaftStore) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := s.fsm.AppliedChanged()
		if s.fsm.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: index %d not applied yet (at %d): %v", kv.ErrNoLeader, index, s.fsm.AppliedIndex(), ctx.Err())
		case <-s.ctx.Done():
			return kv.ErrClosed
		}
	}
}

// rounds shares one call among every caller that arrives while the
// previous call is in flight: they all join the next one. A caller only
// joins a call that starts after it arrived, which is what ReadIndex needs
// (the leader must confirm its leadership after the read began). The
// leader uses it to confirm its leadership, followers for asking the leader.
//
// A call bounds itself (its context is bound to the leader's epoch and a
// timeout), and one that is still running after slowAfter lets the next
// round start: a call stuck on a leader that went silent never holds the
// reads that arrive after it.
type rounds struct {
	mu        sync.Mutex
	waiting   []chan roundResult
	call      func() (uint64, error) // of the next round
	running   bool
	slowAfter time.Duration
	observe   func(float64) // seconds per call, if set
}

type roundResult struct {
	index uint64
	err   error
}

func (r *rounds) do(ctx context.Context, call func() (uint64, error)) (uint64, error) {
	ch := make(chan roundResult, 1)
	r.mu.Lock()
	r.waiting = append(r.waiting, ch)
	r.call = call // every caller's call is equivalent; the latest is freshest
	if !r.running {
		r.running = true
		go r.run()
	}
	r.mu.Unlock()
	select {
	case res := <-ch:
		return res.index, res.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %v", kv.ErrNoLeader, ctx.Err())
	}
}

func (r *rounds) run() {
	for {
		r.mu.Lock()
		batch, call := r.waiting, r.call
		r.waiting = nil
		if len(batch) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			start := time.Now()
			idx, err := call()
			if r.observe != nil {
				r.observe(time.Since(start).Seconds())
			}
			for _, ch := range batch {
				ch <- roundResult{idx, err}
			}
		}()
		if r.slowAfter <= 0 {
			<-done
			continue
		}
		slow := time.NewTimer(r.slowAfter)
		select {
		case <-done:
		case <-slow.C:
		}
		slow.Stop()
	}
}

// Read answers a query, linearizably unless q.Stale. A blocking query
// (q.MinIndex > 0) then waits for a change that could affect its result.
func (s *RaftStore) Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error) {
	if err := kv.ValidateKey(q.Key, q.Kind != kv.ReadGet); err != nil {
		return nil, err
	}
	if q.Kind > kv.ReadKeys {
		return nil, fmt.Errorf("%w: unknown read kind %d", kv.ErrInvalid, q.Kind)
	}
	if !q.Stale {
		if err := s.linearize(ctx); err != nil {
			return nil, err
		}
	}
	if q.MinIndex == 0 {
		return s.readLocal(q)
	}
	return s.block(ctx, q)
}

// ReadTxn evaluates a read-only transaction on this node, linearizably
// unless stale.
func (s *RaftStore) ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (*kv.Result, error) {
	if err := cmd.Validate(s.cfg.MaxValueBytes); err != nil {
		return nil, err
	}
	if !stale {
		if err := s.linearize(ctx); err != nil {
			return nil, err
		}
	}
	return s.fsm.Evaluate(cmd)
}

// linearize waits until this node has applied everything committed before
// the call: after it, a local read is linearizable.
func (s *RaftStore) linearize(ctx context.Context) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for {
		ep := s.leaders.Current()
		start := time.Now()
		idx, err := s.readIndex(ctx)
		if err != nil {
			return err
		}
		indexed := time.Now()
		s.metrics.readIndexLatency.Observe(indexed.Sub(start).Seconds())
		// Catching up is bound to the epoch too: a node cut off after it got
		// the index would otherwise wait for entries that cannot reach it.
		wctx, unbind := leaderwatch.Bind(ctx, ep)
		err = s.waitApplied(wctx, idx)
		unbind()
		s.metrics.applyWaitLatency.Observe(time.Since(indexed).Seconds())
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(wctx), leaderwatch.ErrLeaderChanged) {
			continue // ask again: the new leader, or a quick "no leader"
		}
		if err == nil {
			s.leaders.ReadServed()
		}
		return err
	}
}

// block re-reads q each time a watched key changes, until the result's
// index passes q.MinIndex or the wait is over.
func (s *RaftStore) block(ctx context.Context, q kv.Query) (*kv.QueryResult, error) {
	var res *kv.QueryResult
	err := s.blockOn(ctx, s.watch, q.Key, q.Kind != kv.ReadGet, q.MinIndex, q.Wait, func() (uint64, error) {
		var err error
		if res, err = s.readLocal(q); err != nil {
			return 0, err
		}
		return res.Index, nil
	})
	return res, err
}

// blockOn calls read each time hub reports a change of key (or under it,
// with prefix), until read's index passes minIndex or the wait (default
// kv.DefaultWait, at most kv.MaxWait, plus jitter) is over; the last read
// is the answer. The watch is registered before each read, so a change
// between the read and the wait still wakes it.
func (s *RaftStore) blockOn(ctx context.Context, hub *watch.Hub, key string, prefix bool, minIndex uint64, wait time.Duration, read func() (uint64, error)) error {
	if wait <= 0 {
		wait = kv.DefaultWait
	}
	wait = min(wait, kv.MaxWait)
	wait += rand.N(wait/16 + 1) // spread the herd of re-polls, as Consul does
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		w := hub.Watch(key, prefix)
		index, err := read()
		if err != nil || index > minIndex {
			hub.Stop(w)
			return err
		}
		select {
		case <-w.C:
			hub.Stop(w)
			continue
		case <-timer.C:
		case <-s.ctx.Done():
		case <-ctx.Done():
			hub.Stop(w)
			return fmt.Errorf("%w: blocking query abandoned: %v", kv.ErrNoLeader, ctx.Err())
		}
		hub.Stop(w)
		return nil
	}
}

// readLocal reads this node's FSM.
func (s *RaftStore) readLocal(q kv.Query) (*kv.QueryResult, error) {
	res := &kv.QueryResult{Stale: q.Stale}
	var err error
	switch q.Kind {
	case kv.ReadGet:
		var e kv.Entry
		e, res.Index, err = s.fsm.Get(q.Key)
		if err == nil {
			res.Entries = []kv.Entry{e}
		} else if errors.Is(err, kv.ErrNotFound) {
			err = nil
		}
	case kv.ReadList:
		res.Entries, res.Index, err = s.fsm.List(q.Key)
	case kv.ReadKeys:
		res.Keys, res.Index, err = s.fsm.Keys(q.Key, q.Separator)
	}
	if err != nil {
		return nil, err
	}
	addr, _ := s.raft.LeaderWithID()
	res.KnownLeader = addr != ""
	res.LastContact = s.LastContact()
	return res, nil
}

// LastContact is how long ago this node last heard from the leader (0 on
// the leader itself).
func (s *RaftStore) LastContact() time.Duration {
	if s.raft.State() == raft.Leader {
		return 0
	}
	last := s.raft.LastContact()
	if last.IsZero() {
		return 0
	}
	return time.Since(last)
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
	return s.Read(ctx, q)
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
