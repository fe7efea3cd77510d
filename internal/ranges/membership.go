package ranges

import (
	"context"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/kv"
)

// Until ranges move on their own (placement), every range is replicated
// on the servers of range 0, the cluster's membership: a server that
// joins the cluster joins every range, one that is removed leaves every
// range. Each range's leader mirrors range 0's configuration into its own,
// one change at a time: a server that is missing joins as a non-voter
// (the range's autopilot promotes it once it has caught up, as range 0's
// does; read replicas stay non-voters), then servers range 0 no longer
// has are removed. A server is added once it is a voter of range 0 (or a
// read replica): by then its replica of range 0 has caught up, so the
// range's snapshot no longer overlaps what its range 0 still holds.

// mirrorMembership sends the meta range the descriptors of the ranges
// this node leads (publish) every second, and runs the mirror every
// mirrorEvery (at least a second), until ctx ends.
func (s *Set) mirrorMembership(ctx context.Context, mirrorEvery time.Duration) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	mirrorTicks := max(1, int(mirrorEvery/time.Second))
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mirror := tick%mirrorTicks == 0
		for _, g := range append(s.Groups(), s.meta) {
			if !g.IsLeader() || !g.FSM().Initialized() {
				continue
			}
			if g != s.meta && mirror {
				if err := s.mirror(ctx, g); err != nil && ctx.Err() == nil {
					s.logger.Warn("cannot bring the range's replicas in line with the cluster's members", "range", g.GroupID(), "err", err)
				}
			}
			if err := s.publish(ctx, g); err != nil && ctx.Err() == nil {
				s.logger.Warn("cannot send the range's descriptor to the meta range", "range", g.GroupID(), "err", err)
			}
		}
	}
}

// mirror makes at most one change to g's configuration toward range 0's.
// Range 0's configuration is this node's replica's, which may lag: before
// a change, the replica catches up with range 0's leader (a read index),
// so that a replica behind the cluster does not undo a change made since
// (re-add a server just removed, remove one just added).
func (s *Set) mirror(ctx context.Context, g *group.Group) error {
	change, err := s.nextChange(ctx, g)
	if err != nil || change == nil {
		return err
	}
	if err := s.meta.Linearize(ctx); err != nil {
		return err
	}
	if change, err = s.nextChange(ctx, g); err != nil || change == nil {
		return err
	}
	return change()
}

// nextChange is the first change g's configuration needs toward range 0's
// as this node's replica has it; nil if none.
func (s *Set) nextChange(ctx context.Context, g *group.Group) (func() error, error) {
	want, err := s.meta.Membership().Configuration(ctx)
	if err != nil {
		return nil, err
	}
	have, err := g.Membership().Configuration(ctx)
	if err != nil {
		return nil, err
	}
	haveAt := map[string]string{}
	for _, srv := range have.Servers {
		haveAt[srv.ID] = srv.Address
	}
	wanted := map[string]bool{}
	for _, srv := range want.Servers {
		wanted[srv.ID] = true
		if addr, ok := haveAt[srv.ID]; ok && addr == srv.Address {
			continue
		}
		if !srv.Voter {
			if replica, err := s.meta.FSM().ReadReplica(srv.ID); err != nil || !replica {
				continue // a joining server: it joins the ranges once range 0 has it as a voter
			}
		}
		return func() error { return g.Membership().Join(ctx, srv.ID, srv.Address) }, nil
	}
	for _, srv := range have.Servers {
		if !wanted[srv.ID] {
			return func() error { return removeReplica(ctx, g, srv) }, nil
		}
	}
	return nil, nil
}

// removeReplica removes srv from g; the leader removing itself hands the
// range's leadership to another voter first, so that the range is not
// leaderless for an election timeout.
func removeReplica(ctx context.Context, g *group.Group, srv kv.Server) error {
	if srv.ID == g.ID() {
		return g.Membership().TransferLeadership(ctx, "")
	}
	return g.Membership().Remove(ctx, srv.ID)
}

// publish sends range 0's routing copy of the range map g's descriptor if
// the copy (as this node's replica of range 0 has it) is older. Range 0
// before its first split has no descriptor to send.
func (s *Set) publish(ctx context.Context, g *group.Group) error {
	d := g.FSM().Descriptor()
	if d.ID == 0 && d.Generation == 0 {
		return nil
	}
	copies, err := s.meta.FSM().RangeMap()
	if err != nil {
		return err
	}
	for _, c := range copies {
		if c.ID == d.ID && c.Generation >= d.Generation {
			return nil
		}
	}
	_, err = s.meta.Propose(ctx, fsm.RangeMetaEntry(d))
	return err
}
