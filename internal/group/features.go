package group

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// What features (packages sessions, aclsys) use of a group besides its
// hooks: proposing their entries, reading the state machine, and calling
// the leader.

// ProposeHere proposes e on this node if it leads, never forwarding: for
// what only the leader writes (session invalidations, the ACL bootstrap).
func (g *Group) ProposeHere(ctx context.Context, e *fsm.Entry) (*kv.Result, error) {
	if !g.IsLeader() {
		return nil, fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, g.addr)
	}
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	return g.applyLocal(ctx, e)
}

// FSM is the group's state machine on this node, for reads.
func (g *Group) FSM() *fsm.FSM { return g.fsm }

// WaitApplied waits until this node has applied index.
func (g *Group) WaitApplied(ctx context.Context, index uint64) error {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	return g.waitApplied(ctx, index)
}

// Members are the server IDs of the group's configuration.
func (g *Group) Members() []string {
	var ids []string
	for _, srv := range g.raft.GetConfiguration().Configuration().Servers {
		ids = append(ids, string(srv.ID))
	}
	return ids
}

// LastHeard is when this node, leading, last heard from server id (zero:
// never).
func (g *Group) LastHeard(id string) time.Time { return g.contacts.last(id) }

// HeartbeatTimeout is the group's raft heartbeat timeout.
func (g *Group) HeartbeatTimeout() time.Duration { return g.cfg.HeartbeatTimeout }

// Logger is the group's logger.
func (g *Group) Logger() *slog.Logger { return g.logger }

// Peers is the client of the node-to-node calls of this group.
func (g *Group) Peers() *peerrpc.Client { return g.peers }

// Closing is closed once the group starts shutting down.
func (g *Group) Closing() <-chan struct{} { return g.ctx.Done() }

// OnLeader runs a call that must reach the leader: local if this node
// leads, else remote with the leader's address, bounded by a heartbeat
// timeout and by the leader's epoch (a change of leader ends it at once).
// Calls that certainly did nothing (kv.ErrNoLeader) are retried with the
// next leader, within ctx or ApplyTimeout. kind names it in the
// raftkv_forwarded_requests_total metric.
func (g *Group) OnLeader(ctx context.Context, kind string, local func(ctx context.Context) error, remote func(ctx context.Context, leader string) error) error {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	return g.onLeader(ctx, func() error { return local(ctx) }, func(ep leaderwatch.Epoch) error {
		g.metrics.forwarded.WithLabelValues(kind).Inc()
		cctx, cancel := peerContext(ctx, ep, g.peerTimeout())
		defer cancel()
		return remote(cctx, ep.Leader)
	})
}

// Watched is what a blocking read waits on: keys (Key, or under it with
// Prefix), or any session (Sessions).
type Watched struct {
	Key      string
	Prefix   bool
	Sessions bool
}

// ReadBlocking answers a read, linearizably unless stale; with minIndex it
// calls read again each time what it watches changes, until read's index
// passes minIndex or the wait is over (see blockOn).
func (g *Group) ReadBlocking(ctx context.Context, stale bool, on Watched, minIndex uint64, wait time.Duration, read func() (uint64, error)) error {
	leaderLost, err := g.readPoint(ctx, stale)
	if err != nil {
		return err
	}
	if minIndex == 0 {
		_, err := read()
		return err
	}
	hub := g.watch
	if on.Sessions {
		hub = g.sessionWatch
	}
	return g.blockOn(ctx, hub, on.Key, on.Prefix, minIndex, wait, leaderLost, read)
}

// CloseAt proposes a close of the group's range at index at (see
// fsm.Close): OK, or refused with the range's floor.
func (g *Group) CloseAt(ctx context.Context, at uint64) (*kv.Result, error) {
	return g.Propose(ctx, fsm.CloseEntry(at))
}
