package ranges

import (
	"context"
	"errors"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// A write whose range this node holds no replica of (yet: a node that just
// joined, or one whose replica of a new range has not started) is routed
// by the meta range's copy of the range map: to the range's replicas, one
// after the other, until the one that leads it answers. The copy may be
// behind: a range that no longer holds a key refuses it (kv.ErrRangeMoved,
// nothing done) and the router tries again once the copy or this node's
// replicas have changed. Reads wait for this node's replica.

// applyElsewhere runs cmd by the copy of the range map; routed false: the
// copy knows no one range holding every key of cmd, or none of its
// replicas leads it now.
func (s *Set) applyElsewhere(ctx context.Context, cmd *kv.Command) (res *kv.Result, routed bool, err error) {
	if len(cmd.Ops) == 0 {
		return nil, false, nil
	}
	for _, op := range cmd.Ops {
		if tree(op) {
			return nil, false, nil
		}
	}
	copies, err := s.meta.FSM().RangeMap()
	if err != nil {
		return nil, false, err
	}
	d, ok := holding(copies, cmd.Ops[0].Key)
	if !ok {
		return nil, false, nil
	}
	for _, op := range cmd.Ops {
		if !d.Contains(op.Key) {
			return nil, false, nil // the ranges' own refusal, once this node has them
		}
	}
	if res, err := s.checkSessions(ctx, local{d: d}, cmd); res != nil || err != nil {
		return res, true, err
	}
	conf, err := s.meta.Membership().Configuration(ctx)
	if err != nil {
		return nil, false, err
	}
	addrOf := map[string]string{}
	for _, srv := range conf.Servers {
		addrOf[srv.ID] = srv.Address
	}
	var addrs []string
	for _, voters := range []bool{true, false} { // the leader is a voter
		for _, r := range d.Replicas {
			if addr, ok := addrOf[r.Node]; ok && r.Voter == voters && r.Node != s.meta.ID() {
				addrs = append(addrs, addr)
			}
		}
	}
	res, err = s.meta.ProposeElsewhere(ctx, d.ID, d.Generation, addrs, fsm.KVEntry(cmd))
	if errors.Is(err, kv.ErrNoLeader) {
		return nil, false, nil // no replica leads it right now: again, after a pause
	}
	return res, true, err
}

// holding finds the range of the copy holding key: of two copies that
// both do (a parent's older copy and its child's), the one that starts
// later is the newer.
func holding(copies []rangemap.Descriptor, key string) (rangemap.Descriptor, bool) {
	var best rangemap.Descriptor
	found := false
	for _, d := range copies {
		if d.Contains(key) && (!found || d.Start > best.Start) {
			best, found = d, true
		}
	}
	return best, found
}
