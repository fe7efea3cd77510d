package group

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// ReadIndex, built on hashicorp/raft (which has none): the leader's
// barrier after each election, the shared leadership rounds (verify.go) and
// read-index calls, and waiting until the FSM has applied the index. See
// DESIGN.md, Reads.

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
func (s *Group) signalLocked() {
	close(s.leader.signal)
	s.leader.signal = make(chan struct{})
}

// watchLeadership runs until raft has stopped, not just until Close starts:
// raft blocks on NotifyCh, and it steps down (notifying) while shutting down.
func (s *Group) watchLeadership(notify <-chan bool) {
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
			}
			s.hooks.leadershipChanged(isLeader)
			s.logger.Info("leadership changed", "leader", isLeader)
		}
	}
}

// barrier commits an entry of the current term, retrying for as long as
// this node stays leader of the same epoch (a barrier refused during a
// leadership transfer that then fails must not leave reads stuck).
func (s *Group) barrier(epoch uint64) {
	backoff := 10 * time.Millisecond
	for {
		term := s.raft.CurrentTerm()
		err := s.raft.Barrier(0).Error()
		s.leader.mu.Lock()
		if s.leader.epoch != epoch || !s.IsLeader() {
			s.leader.mu.Unlock()
			return
		}
		if err == nil && s.raft.CurrentTerm() == term {
			s.leader.readyTerm = term
			s.signalLocked()
			s.leader.mu.Unlock()
			s.hooks.led() // everything committed before this term is applied
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
func (s *Group) readyTerm(ctx context.Context) (uint64, error) {
	for {
		s.leader.mu.Lock()
		ready, signal := s.leader.readyTerm, s.leader.signal
		s.leader.mu.Unlock()
		if !s.IsLeader() {
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
func (s *Group) leaderReadIndex(ctx context.Context, asker *peerrpc.Voucher) (uint64, error) {
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
func (s *Group) lastFSMEntry(index uint64) uint64 {
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

// AppliedIndex is how far this node has applied the log, counting the
// entries the state machine never sees (an election's no-op, barriers):
// the FSM's own index stays below the commit index of an idle cluster for
// ever, which would look like a node falling behind.
func (s *Group) AppliedIndex() uint64 {
	fsmApplied := s.fsm.AppliedIndex()
	raftApplied := s.raft.AppliedIndex()
	if raftApplied > fsmApplied && s.lastFSMEntry(raftApplied) <= fsmApplied {
		return raftApplied
	}
	return fsmApplied
}

// readIndex returns the index this node must have applied before a
// linearizable read: computed locally on the leader, asked of the leader on
// a follower. A read changes nothing, so it is retried through elections
// until the context ends.
func (s *Group) readIndex(ctx context.Context) (uint64, error) {
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
func (s *Group) waitApplied(ctx context.Context, index uint64) error {
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
