package group

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/kv"
)

// Requests follow the leader, not timers. Every request that must run on
// the leader (writes, read indexes, membership, restores) goes through
// onLeader: run here if this node leads, else call the leader of the
// current epoch (package leaderwatch). A call in flight is abandoned as
// soon as this node learns of a newer leader or term, and retried with the
// new leader if it certainly did nothing (kv.ErrNoLeader); a write that was
// sent has an unknown fate and is answered so, unless it carries an
// idempotency key, which makes the retry safe.

// peerTimeout bounds one read-index call or leadership probe: a leader
// that cannot answer within a heartbeat timeout is, for this node, as good
// as gone (raft itself starts an election after that long without contact).
func (s *Group) peerTimeout() time.Duration { return s.cfg.HeartbeatTimeout }

// forwardTimeout bounds one forwarded write or membership change, which
// also waits for the leader's commit. It is only a backstop: a change of
// leader ends the call at once, so it can leave room for a loaded leader.
func (s *Group) forwardTimeout() time.Duration {
	return max(4*s.cfg.HeartbeatTimeout, 2*time.Second)
}

// maxLeaderless is how long a request waits for a leader when none is
// known: long enough for an election (a follower notices the loss within
// two heartbeat timeouts of the last contact, and a split vote costs one
// more election timeout), after which the node answers a request that asked
// to fail fast at once, until a leader is known again.
func (s *Group) maxLeaderless() time.Duration { return 2 * s.cfg.ElectionTimeout }

// leaderlessWait is how much longer a request may wait for a leader, none
// being known since the given time (cutOff: see ErrCutOff): until its hold ends (kv.WithLeaderHold,
// Consul's way), or else until maxLeaderless after the loss, and not at
// all on a node cut off from the majority.
func (s *Group) leaderlessWait(ctx context.Context, since time.Time, cutOff bool) time.Duration {
	if until, ok := kv.LeaderHoldUntil(ctx); ok {
		return time.Until(until)
	}
	if cutOff {
		return 0
	}
	return s.maxLeaderless() - time.Since(since)
}

// ErrCutOff: this node led, lost its lease, and has heard of no successor:
// it cannot reach a majority, so there is nothing to wait for.
var ErrCutOff = errors.New("this node lost its leadership and reaches no majority")

// onLeader runs local if this node leads, or remote with the current
// epoch's leader. Attempts that certainly did nothing (kv.ErrNoLeader) are
// retried once a (new) leader is known, until ctx ends; anything else, an
// unknown outcome included, is returned as it is.
func (s *Group) onLeader(ctx context.Context, local func() error, remote func(ep leaderwatch.Epoch) error) error {
	for attempt := 0; ; attempt++ {
		ep, known := s.leaders.Leader()
		var err error
		ranHere := s.IsLeader()
		switch {
		case ranHere:
			err = local()
		case known && ep.Leader == s.addr:
			// The watch has not yet seen this node step down: sending the
			// request to itself could only be refused, and a reply lost to
			// the watch catching up meanwhile would look like an unknown
			// outcome.
			err = fmt.Errorf("%w: this node no longer leads", kv.ErrNoLeader)
		case known:
			err = remote(ep)
		default:
			err = fmt.Errorf("%w: no leader known", kv.ErrNoLeader)
		}
		if !errors.Is(err, kv.ErrNoLeader) || ctx.Err() != nil || holdOver(ctx) {
			return err
		}
		if werr := s.awaitLeader(ctx, ep, known, ranHere, attempt); werr != nil {
			return fmt.Errorf("%w (%w)", err, werr)
		}
	}
}

// holdOver says whether a request held for a leader (kv.WithLeaderHold)
// has waited as long as it may: even with a leader known but not
// answering, Consul's clients expect an answer by then.
func holdOver(ctx context.Context) bool {
	until, ok := kv.LeaderHoldUntil(ctx)
	return ok && !time.Now().Before(until)
}

// awaitLeader waits before the next attempt of a request that did nothing
// under epoch prev (whose leader was known or not): until a leader is known
// in a later epoch or again, or, if the leader is the same, a short backoff
// (it may have refused because it was not ready yet). With no leader known
// it waits as leaderlessWait says. A refusal by this node itself as leader (a
// leadership transfer in progress, a barrier not yet applied) is retried
// after the pause too, not in a busy loop.
func (s *Group) awaitLeader(ctx context.Context, prev leaderwatch.Epoch, prevKnown, ranHere bool, attempt int) error {
	pause := time.NewTimer(min(10*time.Millisecond<<min(attempt, 10), s.cfg.HeartbeatTimeout/2))
	defer pause.Stop()
	paused := false
	for {
		changed := s.leaders.Changed()
		ep, known, since, cutOff := s.leaders.State()
		wait := time.Hour // a leader is known: the pause decides
		switch {
		case s.IsLeader() && (!ranHere || paused):
			return nil // this node leads now; after a refusal here (a transfer), after a pause
		case known && !s.IsLeader() && (ep != prev || !prevKnown || paused):
			return nil
		case !known:
			if wait = s.leaderlessWait(ctx, since, cutOff); wait <= 0 {
				if cutOff {
					return ErrCutOff
				}
				return fmt.Errorf("no leader for %s", time.Since(since).Round(time.Millisecond))
			}
		}
		giveUp := time.NewTimer(wait)
		select {
		case <-changed:
		case <-pause.C:
			paused = true
		case <-giveUp.C:
		case <-ctx.Done():
			giveUp.Stop()
			return ctx.Err()
		case <-s.ctx.Done():
			giveUp.Stop()
			return kv.ErrClosed
		}
		giveUp.Stop()
	}
}

// peerContext bounds one call to another node: by ctx, by d, and by the
// epoch it was made in, so that it ends as soon as this node learns of a
// newer leader or term.
func peerContext(ctx context.Context, ep leaderwatch.Epoch, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, unbind := leaderwatch.Bind(ctx, ep)
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); unbind() }
}

// heartbeatTransport shows the leader watch every heartbeat this node
// receives, so that it knows when it last heard from each leader (the start
// of a failover). Embedding keeps the transport's optional interfaces
// (pre-vote, close) visible to raft.
type heartbeatTransport struct {
	*raft.NetworkTransport
	heard func(id string, term uint64)
	// acked sees every AppendEntries (heartbeats included) a peer answered:
	// the leader's view of which nodes are alive, for session node checks.
	acked func(id string)
}

func (t *heartbeatTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && t.acked != nil {
		t.acked(string(id))
	}
	return err
}

func (t *heartbeatTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		t.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	t.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		cb(rpc) // first, so that a refresh the heartbeat causes sees its effect
		if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
			t.heard(string(req.ID), req.Term)
		}
	})
}
