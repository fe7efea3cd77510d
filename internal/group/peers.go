package group

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// peerContacts records when each peer last answered an AppendEntries of
// this node (a heartbeat every HeartbeatTimeout/10 while it leads). Raft's
// own FailedHeartbeatObservation is not enough for node health: with
// packets dropped it comes only after the transport's 10s timeout, and the
// LastContact it carries is reset when replication restarts.
type peerContacts struct{ m sync.Map } // id → time.Time

func (p *peerContacts) heard(id string) { p.m.Store(id, time.Now()) }

func (p *peerContacts) last(id string) time.Time {
	if v, ok := p.m.Load(id); ok {
		return v.(time.Time)
	}
	return time.Time{}
}

// watchPeers tells the features (PeerRemoved) of every server that leaves
// the configuration.
func (g *Group) watchPeers() {
	ch := make(chan raft.Observation, 256)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.PeerObservation)
		return ok
	})
	g.raft.RegisterObserver(obs)
	defer g.raft.DeregisterObserver(obs)
	for {
		select {
		case o := <-ch:
			if d := o.Data.(raft.PeerObservation); d.Removed {
				g.hooks.peerRemoved(string(d.Peer.ID))
			}
		case <-g.raftDone:
			return
		}
	}
}
