package raftstore

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/internal/ranges"
	"github.com/raftkv/raftkv/kv"
)

// openRanges starts the group of every range but 0 the node's store holds
// (the ranges splits made before a restart).
func (s *RaftStore) openRanges() error {
	ds, err := s.store.Ranges()
	if err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	for _, d := range ds {
		if d.ID == 0 {
			continue
		}
		if err := s.ranges.Ensure(d); err != nil {
			return err
		}
	}
	s.node.OnUnknownGroup(s.ranges.Adopt)
	return nil
}

// startRange opens and starts the group of range d on this node: its raft
// log in ranges/<id>, its state machine in the node's store. A range a
// split made starts (when it has no raft state yet) from its birth
// snapshot, naming the replicas the split named at the addresses range 0
// knows them by; an empty d is a replica raft traffic asked for, which
// gets its state from the range's leader.
func (s *RaftStore) startRange(d rangemap.Descriptor) (*group.Group, error) {
	if d.Empty() {
		// The store may hold the range by now (its parent's split reached
		// this node): then it starts as a replica of the split.
		stored, ok, err := s.store.Descriptor(d.ID)
		if err != nil {
			return nil, fmt.Errorf("raftstore: range %d: %w", d.ID, err)
		}
		if ok {
			d = stored
		}
	}
	conf, err := s.group.Membership().Configuration(context.Background())
	if err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, srv := range conf.Servers {
		addrs[srv.ID] = srv.Address
	}
	var servers []raft.Server
	for _, r := range d.Replicas {
		addr, ok := addrs[r.Node]
		if !ok {
			// Not (or no longer) a member of range 0 as this node knows it:
			// it stays in the configuration all replicas start from (they
			// must agree on it; quorums are counted by ID), at an address
			// nothing answers on, until the range's leader mirrors range
			// 0's membership.
			s.node.Logger().Warn("a replica of the range is not a member of range 0 here", "range", d.ID, "replica", r.Node)
			addr = "unknown.invalid:0"
		}
		suffrage := raft.Nonvoter
		if r.Voter {
			suffrage = raft.Voter
		}
		servers = append(servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(r.Node), Address: raft.ServerAddress(addr)})
	}
	gcfg := s.cfg.groupConfig(d.ID, filepath.Join(s.cfg.DataDir, "ranges", strconv.FormatUint(d.ID, 10)), s.disk)
	gcfg.Bootstrap, gcfg.Join, gcfg.Recover = false, nil, false
	gcfg.Birth, gcfg.Uninitialized = servers, d.Empty()
	gcfg.MetricsOf = s.group // node-wide counters on /metrics; its raft gauges come per range (ranges.Set)
	gcfg.Store = s.store
	gcfg.ReadReplicaOf = s.group.FSM().ReadReplica
	g, err := group.Open(*gcfg, s.node)
	if err != nil {
		return nil, fmt.Errorf("raftstore: range %d: %w", d.ID, err)
	}
	if err := s.node.AddGroup(d.ID, rangeCalls{g.PeerCalls()}); err != nil {
		g.Close()
		return nil, err
	}
	g.Start()
	return g, nil
}

// rangeCalls are the node-to-node calls of a range other than 0, which
// holds no sessions.
type rangeCalls struct{ *group.PeerCalls }

func (rangeCalls) Renew(context.Context, string) (kv.Session, error) {
	return kv.Session{}, fmt.Errorf("%w: sessions live in range 0", kv.ErrInvalid)
}

// SplitRange cuts the range holding key at key (which ends with "/"): the
// keys from key on form a new range, its own raft group on the same
// nodes. No data is copied. It returns both halves once this node runs the
// new range.
func (s *RaftStore) SplitRange(ctx context.Context, key string) (api.RangeSplit, error) {
	l, r, err := s.ranges.Split(ctx, key)
	if err != nil {
		return api.RangeSplit{}, err
	}
	infos, err := s.ranges.Infos(ctx)
	if err != nil {
		return api.RangeSplit{}, err
	}
	out := api.RangeSplit{Left: rangeOf(ranges.Info{Descriptor: l}), Right: rangeOf(ranges.Info{Descriptor: r})}
	for _, in := range infos {
		switch in.ID {
		case l.ID:
			out.Left = rangeOf(in)
		case r.ID:
			out.Right = rangeOf(in)
		}
	}
	return out, nil
}

// KeepWhole keeps prefix in one range from now on: a split never cuts
// inside it, so its transactions and listings stay within one range
// (keep false lets it go). Refused (kv.ErrInvalid) if a range boundary
// already falls inside it.
func (s *RaftStore) KeepWhole(ctx context.Context, prefix string, keep bool) error {
	if prefix == "" {
		return kv.Errorf(kv.ErrInvalid, "keep-whole needs a prefix")
	}
	return s.ranges.KeepWhole(ctx, prefix, keep)
}

// Ranges returns the ranges of the keyspace as this node holds them, in
// key order: bounds, generation, replicas, leader, size and write rate.
func (s *RaftStore) Ranges(ctx context.Context) ([]api.Range, error) {
	infos, err := s.ranges.Infos(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Range, len(infos))
	for i, in := range infos {
		out[i] = rangeOf(in)
	}
	return out, nil
}

// Route says where writes of key go, for the answer's api.RouteHeader.
func (s *RaftStore) Route(key string) (api.Route, bool) {
	d, leader, ok := s.ranges.Route(key)
	if !ok {
		return api.Route{}, false
	}
	return api.Route{Range: d.ID, Generation: d.Generation, Start: d.Start, End: d.End, Leader: leader}, true
}

func rangeOf(in ranges.Info) api.Range {
	r := api.Range{ID: in.ID, Start: in.Start, End: in.End, Generation: in.Generation, Replicas: []api.RangeReplica{},
		Leader: in.Leader, Keys: in.Keys, Bytes: in.Bytes, WritesPerSec: in.WritesPerSec, FromMeta: !in.Held}
	for _, rep := range in.Replicas {
		r.Replicas = append(r.Replicas, api.RangeReplica{Node: rep.Node, Voter: rep.Voter})
	}
	return r
}
