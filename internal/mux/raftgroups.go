package mux

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftGroups routes incoming raft connections to the layer of the group
// they name. A connection for a group this node does not run is closed:
// the dialling peer's transport retries, as it would with a node that is
// down.
type raftGroups struct {
	mu      sync.Mutex
	layers  map[uint64]*RaftLayer
	closed  bool
	unknown func(group uint64) bool // see Mux.OnUnknownRaftGroup
}

func (g *raftGroups) open(m *Mux, group uint64) (*RaftLayer, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, net.ErrClosed
	}
	if l, ok := g.layers[group]; ok {
		if l.claimed {
			return nil, fmt.Errorf("mux: raft group %d already has a layer on this port", group)
		}
		l.claimed = true
		return l, nil
	}
	l := &RaftLayer{childListener: newChild(m.advertise), mux: m, group: group, claimed: true}
	g.layers[group] = l
	return l, nil
}

// reserve makes group's layer now, so that its connections wait for the
// group's transport (as the connections of a node that is starting
// always did) instead of being closed as a group's the node does not run.
func (g *raftGroups) reserve(m *Mux, group uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.layers[group]; !ok && !g.closed {
		g.layers[group] = &RaftLayer{childListener: newChild(m.advertise), mux: m, group: group}
	}
}

func (g *raftGroups) deliver(m *Mux, c net.Conn, group uint64) {
	g.mu.Lock()
	l, unknown := g.layers[group], g.unknown
	g.mu.Unlock()
	if l == nil && unknown != nil && unknown(group) {
		g.reserve(m, group)
		g.mu.Lock()
		l = g.layers[group]
		g.mu.Unlock()
	}
	if l == nil {
		m.drop(c, fmt.Errorf("no raft group %d on this node", group))
		return
	}
	l.deliver(c)
}

// unreserve closes group's layer if nobody claimed it (the group did not
// start after all): connections waiting for it are closed.
func (g *raftGroups) unreserve(group uint64) {
	g.mu.Lock()
	l := g.layers[group]
	if l == nil || l.claimed {
		g.mu.Unlock()
		return
	}
	delete(g.layers, group)
	g.mu.Unlock()
	l.childListener.Close()
}

func (g *raftGroups) release(l *RaftLayer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.layers[l.group] == l {
		delete(g.layers, l.group)
	}
}

func (g *raftGroups) closeAll() {
	g.mu.Lock()
	g.closed = true
	layers := g.layers
	g.layers = map[uint64]*RaftLayer{}
	g.mu.Unlock()
	for _, l := range layers {
		l.childListener.Close()
	}
}

// RaftLayer implements raft.StreamLayer for one raft group over the shared
// port.
type RaftLayer struct {
	*childListener
	mux     *Mux
	group   uint64
	claimed bool // handed out by RaftLayer (under raftGroups.mu)
}

var _ raft.StreamLayer = (*RaftLayer)(nil)

// Dial opens a raft connection of this layer's group to a peer's shared
// port. Group 0's carries no ID (see GroupRaftMarker).
func (l *RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	var writeDeadline time.Time
	if timeout > 0 {
		writeDeadline = time.Now().Add(timeout)
	}
	if l.group == 0 {
		return l.mux.dialStream(ctx, string(address), ProtoRaft, RaftMarker, nil, writeDeadline)
	}
	return l.mux.dialStream(ctx, string(address), ProtoGroupRaft, GroupRaftMarker, binary.AppendUvarint(nil, l.group), writeDeadline)
}

// Close stops this group's connections from arriving and frees its ID.
func (l *RaftLayer) Close() error {
	l.mux.raft.release(l)
	return l.childListener.Close()
}
