package group

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/kv"
)

// Autopilot is membership's: it promotes joined non-voters once they are
// stable, and reports every server's health. It attaches like the
// features do, starting with this node's leadership and stopping with it.
func (g *Group) attachAutopilot() {
	g.Attach(Hooks{LeadershipChanged: func(leading bool) {
		if leading && g.ctx.Err() == nil {
			g.pilot.Start()
		} else {
			g.pilot.Stop()
		}
	}})
}

// pilotNode is what internal/autopilot asks of this node.
type pilotNode Group

// ServerStats of this node come from its raft; of others, over the port.
func (p *pilotNode) ServerStats(ctx context.Context, id, addr string) (autopilot.Stats, error) {
	s := (*Group)(p)
	if id == s.id {
		return s.localStats(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.peerTimeout())
	defer cancel()
	st, err := s.peers.Stats(ctx, addr)
	if err == nil {
		s.fullDisks.report(id, st.DiskFull)
		s.formats.report(id, st.EntryVersion)
	}
	return st, err
}

func (p *pilotNode) LastHeard(id string) time.Time { return p.contacts.last(id) }

// ReadReplica errs on the side of not promoting: a read error keeps the
// server a non-voter until the next round.
func (p *pilotNode) ReadReplica(id string) bool {
	marked := p.fsm.ReadReplica
	if p.cfg.ReadReplicaOf != nil {
		marked = p.cfg.ReadReplicaOf
	}
	replica, err := marked(id)
	return replica || err != nil
}

// localStats is this node's last log entry (its term is only in raft's
// stats), commit and applied indexes, and leader contact.
func (s *Group) localStats() autopilot.Stats {
	applied := s.AppliedIndex() // first: it never passes the commit index read after it
	st := s.raft.Stats()
	out := autopilot.Stats{LastContact: s.sinceLeader(), AppliedIndex: applied, DiskFull: s.disk.Full(), EntryVersion: fsm.EntryVersion}
	out.LastTerm, _ = strconv.ParseUint(st["last_log_term"], 10, 64)
	out.LastIndex, _ = strconv.ParseUint(st["last_log_index"], 10, 64)
	out.CommitIndex, _ = strconv.ParseUint(st["commit_index"], 10, 64)
	return out
}

// AutopilotHealth reports the health of every server, as the leader's
// autopilot sees it (followers ask the leader).
func (s *Membership) AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error) {
	ctx, cancel := s.group().withTimeout(ctx)
	defer cancel()
	var out kv.AutopilotHealth
	err := s.group().onLeader(ctx, func() error {
		var err error
		out, err = s.localHealth()
		return err
	}, func(ep leaderwatch.Epoch) error {
		cctx, cancel := peerContext(ctx, ep, s.group().peerTimeout())
		defer cancel()
		var err error
		out, err = s.peers.AutopilotHealth(cctx, ep.Leader)
		return err
	})
	return out, err
}

func (s *Membership) localHealth() (kv.AutopilotHealth, error) {
	if !s.group().IsLeader() {
		return kv.AutopilotHealth{}, fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	h := s.pilot.Report()
	if h == nil {
		return kv.AutopilotHealth{}, fmt.Errorf("%w: autopilot has not run yet on the new leader", kv.ErrNoLeader)
	}
	return *h, nil
}
