package group

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/watch"
	"github.com/raftkv/raftkv/kv"
)

// Read answers a query, linearizably unless q.Stale. A blocking query
// (q.MinIndex > 0) then waits for a change that could affect its result.
func (s *Group) Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error) {
	if err := kv.ValidateKey(q.Key, q.Kind != kv.ReadGet); err != nil {
		return nil, err
	}
	if q.Kind > kv.ReadKeys {
		return nil, fmt.Errorf("%w: unknown read kind %d", kv.ErrInvalid, q.Kind)
	}
	leaderLost, err := s.readPoint(ctx, q.Stale)
	if err != nil {
		return nil, err
	}
	if q.MinIndex == 0 {
		return s.readLocal(q)
	}
	return s.block(ctx, q, leaderLost)
}

// ReadTxn evaluates a read-only transaction on this node, linearizably
// unless stale.
func (s *Group) ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (*kv.Result, error) {
	if err := cmd.Validate(s.cfg.MaxValueBytes); err != nil {
		return nil, err
	}
	if check := kv.CheckOf(ctx); check != nil {
		if err := check(cmd.Ops); err != nil {
			return nil, err
		}
	}
	if !stale {
		if err := s.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	return s.fsm.Evaluate(cmd)
}

// Linearize waits until this node has applied everything committed before
// the call: after it, a local read is linearizable.
func (s *Group) Linearize(ctx context.Context) error {
	_, err := s.linearizeUnder(ctx)
	return err
}

// readPoint prepares a read: linearizes it unless stale, and returns the
// end of the leader's epoch it was linearized under, which a blocking
// query stays bound to (nil, never ready, for a stale read).
func (s *Group) readPoint(ctx context.Context, stale bool) (leaderLost <-chan struct{}, err error) {
	if stale {
		return nil, nil
	}
	ep, err := s.linearizeUnder(ctx)
	if err != nil {
		return nil, err
	}
	return ep.Done(), nil
}

// linearizeUnder is linearize, and says under which leader's epoch the
// read index was confirmed.
func (s *Group) linearizeUnder(ctx context.Context) (leaderwatch.Epoch, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for {
		ep := s.leaders.Current()
		start := time.Now()
		idx, err := s.readIndex(ctx)
		if err != nil {
			return ep, err
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
		return ep, err
	}
}

// block re-reads q each time a watched key changes, until the result's
// index passes q.MinIndex or the wait is over. leaderLost is the end of the
// epoch a consistent query was linearized under (nil for a stale one).
func (s *Group) block(ctx context.Context, q kv.Query, leaderLost <-chan struct{}) (*kv.QueryResult, error) {
	var res *kv.QueryResult
	err := s.blockOn(ctx, s.watch, q.Key, q.Kind != kv.ReadGet, q.MinIndex, q.Wait, leaderLost, func() (uint64, error) {
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
//
// A consistent query stays bound to the leader it was linearized under
// (leaderLost, the end of that leader's epoch; nil for a stale query):
// when this node loses that leader, the query is linearized again, and
// fails (No cluster leader) if no leader comes back within the hold. A lock
// monitor (consul/api's Lock, which tracks no time of its own) on a node
// cut off from the cluster thus learns within seconds that it can no longer
// know whether it holds its lock, instead of when its wait runs out
// minutes later, after the lock may have moved.
func (s *Group) blockOn(ctx context.Context, hub *watch.Hub, key string, prefix bool, minIndex uint64, wait time.Duration, leaderLost <-chan struct{}, read func() (uint64, error)) error {
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
		case <-leaderLost:
			hub.Stop(w)
			ep, err := s.linearizeUnder(kv.RenewLeaderHold(ctx)) // held from the loss, not from the query's arrival
			if err != nil {
				return err
			}
			leaderLost = ep.Done()
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
func (s *Group) readLocal(q kv.Query) (*kv.QueryResult, error) {
	res, err := s.fsm.Read(q)
	if err != nil {
		return nil, err
	}
	res.KnownLeader, res.LastContact = s.LeaderMeta()
	return res, nil
}

// LeaderMeta is what every read reports besides its result: whether this
// node knows a leader, and how long ago it last heard from it.
func (s *Group) LeaderMeta() (knownLeader bool, lastContact time.Duration) {
	addr, _ := s.raft.LeaderWithID()
	return addr != "", s.LastContact()
}

// MaxLeaderless is how long a request waits for a leader none is known of
// (see maxLeaderless).
func (s *Group) MaxLeaderless() time.Duration { return s.maxLeaderless() }

// LastContact is how long ago this node last heard from the leader (0 on
// the leader itself).
func (s *Group) LastContact() time.Duration { return max(s.sinceLeader(), 0) }

// sinceLeader is how long ago this node last heard from a leader: 0 on the
// leader, negative if it never has.
func (s *Group) sinceLeader() time.Duration {
	if s.IsLeader() {
		return 0
	}
	last := s.raft.LastContact()
	if last.IsZero() {
		return -1
	}
	return time.Since(last)
}
