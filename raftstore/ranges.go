package raftstore

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/rangemap"
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
	return nil
}

// startRange opens and starts the group of range d on this node: its raft
// log in ranges/<id>, its state machine in the node's store, bootstrapped
// (when it has no raft state yet) with the replicas the split named, at
// the addresses range 0 knows them by.
func (s *RaftStore) startRange(d rangemap.Descriptor) (*group.Group, error) {
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
			return nil, fmt.Errorf("raftstore: range %d: replica %s is not a member", d.ID, r.Node)
		}
		suffrage := raft.Nonvoter
		if r.Voter {
			suffrage = raft.Voter
		}
		servers = append(servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(r.Node), Address: raft.ServerAddress(addr)})
	}
	gcfg := s.cfg.groupConfig(d.ID, filepath.Join(s.cfg.DataDir, "ranges", strconv.FormatUint(d.ID, 10)), s.disk)
	gcfg.Bootstrap, gcfg.Join, gcfg.Recover = false, nil, false
	gcfg.BootstrapServers = servers
	gcfg.Store = s.store
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
func (s *RaftStore) SplitRange(ctx context.Context, key string) (left, right Range, err error) {
	l, r, err := s.ranges.Split(ctx, key)
	if err != nil {
		return left, right, err
	}
	return rangeOf(l), rangeOf(r), nil
}

// Ranges returns the ranges this node holds, in key order.
func (s *RaftStore) Ranges() ([]Range, error) {
	m, err := s.ranges.Map()
	if err != nil {
		return nil, err
	}
	var out []Range
	for _, d := range m.Ranges() {
		out = append(out, rangeOf(d))
	}
	return out, nil
}

// Range is one range of the keyspace: the keys [Start, End) (End "": to
// the end), its generation (one more at every split), and its replicas.
type Range struct {
	ID         uint64
	Start, End string
	Generation uint64
	Replicas   []RangeReplica
}

// RangeReplica is a node holding a range.
type RangeReplica struct {
	Node  string
	Voter bool
}

func rangeOf(d rangemap.Descriptor) Range {
	r := Range{ID: d.ID, Start: d.Start, End: d.End, Generation: d.Generation}
	for _, rep := range d.Replicas {
		r.Replicas = append(r.Replicas, RangeReplica{Node: rep.Node, Voter: rep.Voter})
	}
	return r
}
