// Package autopilot keeps raft membership safe, as Consul's autopilot does:
// a node that joins is added as a non-voter and promoted to voter only once
// it has been healthy (reachable, in the leader's term, close behind the
// leader's log) for the stabilization time. A joining address where nothing
// answers therefore never counts toward quorum.
//
// It runs hashicorp/raft-autopilot on the leader; this package supplies what
// the library asks of an application (the known servers, their raft stats,
// the promotion policy) and turns its state into Consul's health report.
package autopilot

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	ap "github.com/hashicorp/raft-autopilot"

	"github.com/raftkv/raftkv/kv"
)

// Stats is what a server says of its own raft log.
type Stats struct {
	LastContact time.Duration // since it last heard from the leader; 0 on the leader, <0 never
	LastTerm    uint64
	LastIndex   uint64
	// CommitIndex and AppliedIndex are not autopilot's business: they
	// ride along for the health report's readers (the web UI).
	CommitIndex  uint64
	AppliedIndex uint64
	// DiskFull rides along for the leader, which refuses writes while a
	// voter's disk is full.
	DiskFull bool
	// EntryVersion is the newest form of log entries the server reads
	// (fsm.EntryVersion; 0 from releases before typed entries): the
	// leader writes a form only once every server reads it.
	EntryVersion int `json:",omitempty"`
}

// Node is what the pilot needs of the node it runs on.
type Node interface {
	// ServerStats asks the server id at addr (this node included) for its
	// stats.
	ServerStats(ctx context.Context, id, addr string) (Stats, error)
	// LastHeard is when this node, leading, last heard from server id
	// (zero: never).
	LastHeard(id string) time.Time
	// ReadReplica reports whether server id joined as a non-voter for good.
	ReadReplica(id string) bool
}

// Clock is the time source of health and promotion decisions.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config tunes the pilot; zero values take Consul's defaults.
type Config struct {
	// StabilizationTime a non-voter must stay healthy before promotion
	// (default 10s).
	StabilizationTime time.Duration
	// LastContactThreshold: a server that has not heard from the leader for
	// longer is unhealthy (default 200ms).
	LastContactThreshold time.Duration
	// MaxTrailingLogs: a server further behind the leader's last index is
	// unhealthy (default 250).
	MaxTrailingLogs uint64
	// FailAfter: a server the leader has not heard from for this long is
	// reported failed (default 10s).
	FailAfter time.Duration
	// Interval between health updates and promotion decisions (default 1s).
	Interval time.Duration
	Clock    Clock
	Logger   hclog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.StabilizationTime, 10*time.Second)
	def(&c.LastContactThreshold, 200*time.Millisecond)
	def(&c.FailAfter, 10*time.Second)
	def(&c.Interval, time.Second)
	if c.MaxTrailingLogs == 0 {
		c.MaxTrailingLogs = 250
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Pilot is the autopilot of one node; it acts only between Start and Stop
// (while the node leads).
type Pilot struct {
	cfg  Config
	raft *raft.Raft
	node Node
	lib  *ap.Autopilot
	// last is the last state with the servers' stats in full (raft-
	// autopilot keeps only the fields it uses), published together so a
	// report never mixes two rounds.
	last atomic.Pointer[snapshot]

	// fetched are the stats of the round in progress, kept from the fetch
	// until raft-autopilot announces the state it made of them (both run
	// on its one update loop).
	fetchedMu sync.Mutex
	fetched   map[raft.ServerID]Stats

	mu     sync.Mutex
	cancel context.CancelFunc
}

// New returns a pilot for r.
func New(r *raft.Raft, node Node, cfg Config) *Pilot {
	cfg.setDefaults()
	p := &Pilot{cfg: cfg, raft: r, node: node}
	p.lib = ap.New(r, (*integration)(p),
		ap.WithLogger(cfg.Logger),
		ap.WithTimeProvider(cfg.Clock),
		ap.WithPromoter(&promoter{clock: cfg.Clock, replica: node.ReadReplica}),
		ap.WithUpdateInterval(cfg.Interval),
		ap.WithReconcileInterval(cfg.Interval))
	return p
}

// Start runs the pilot: call it when this node becomes leader.
func (p *Pilot) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.lib.Start(ctx)
}

// Stop stops it and waits until it has: call it when this node stops
// leading, and before closing raft.
func (p *Pilot) Stop() {
	p.mu.Lock()
	cancel := p.cancel
	p.cancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-p.lib.Stop()
	}
	p.last.Store(nil)
	p.fetchedMu.Lock()
	p.fetched = nil
	p.fetchedMu.Unlock()
}

// snapshot is a pilot state and the stats it was made from.
type snapshot struct {
	state *ap.State
	stats map[raft.ServerID]Stats
}

// Report is the health report of the last state the pilot computed, nil
// before the first one or when it does not run.
func (p *Pilot) Report() *kv.AutopilotHealth {
	l := p.last.Load()
	if l == nil {
		return nil
	}
	now := time.Now()
	h := report(l.state, l.stats, func(id raft.ServerID) time.Duration {
		var heard time.Time
		if p.node != nil {
			heard = p.node.LastHeard(string(id))
		}
		if heard.IsZero() {
			return -1
		}
		return now.Sub(heard)
	})
	return &h
}

// integration is the application side raft-autopilot asks questions of.
type integration Pilot

func (p *integration) AutopilotConfig() *ap.Config {
	return &ap.Config{
		LastContactThreshold:    p.cfg.LastContactThreshold,
		MaxTrailingLogs:         p.cfg.MaxTrailingLogs,
		ServerStabilizationTime: p.cfg.StabilizationTime,
	}
}

// NotifyState publishes a new state with the stats it was made from. A
// server that did not answer this round keeps its previous stats, as
// raft-autopilot keeps its own.
func (p *integration) NotifyState(s *ap.State) {
	p.fetchedMu.Lock()
	fetched := p.fetched
	p.fetched = nil
	p.fetchedMu.Unlock()
	stats := map[raft.ServerID]Stats{}
	if prev := p.last.Load(); prev != nil {
		for id := range s.Servers {
			if st, ok := prev.stats[id]; ok {
				stats[id] = st
			}
		}
	}
	for id, st := range fetched {
		stats[id] = st
	}
	p.last.Store(&snapshot{state: s, stats: stats})
}

func (p *integration) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*ap.Server) map[raft.ServerID]*ap.ServerStats {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[raft.ServerID]*ap.ServerStats{}
	full := map[raft.ServerID]Stats{}
	defer func() {
		p.fetchedMu.Lock()
		p.fetched = full
		p.fetchedMu.Unlock()
	}()
	for id, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := p.node.ServerStats(ctx, string(id), string(srv.Address))
			if err != nil {
				p.cfg.Logger.Debug("no stats from server", "id", id, "error", err)
				return
			}
			mu.Lock()
			out[id] = &ap.ServerStats{LastContact: st.LastContact, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
			full[id] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// KnownServers are the members of the raft configuration; one the leader
// has not heard from for FailAfter is failed.
func (p *integration) KnownServers() map[raft.ServerID]*ap.Server {
	f := p.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	_, leader := p.raft.LeaderWithID()
	now := p.cfg.Clock.Now()
	out := map[raft.ServerID]*ap.Server{}
	for _, srv := range f.Configuration().Servers {
		status := ap.NodeAlive
		if srv.ID != leader {
			if heard := p.node.LastHeard(string(srv.ID)); heard.IsZero() || now.Sub(heard) > p.cfg.FailAfter {
				status = ap.NodeFailed
			}
		}
		out[srv.ID] = &ap.Server{
			ID: srv.ID, Name: string(srv.ID), Address: srv.Address, NodeStatus: status,
			RaftVersion: raft.ProtocolVersionMax, IsLeader: srv.ID == leader, NodeType: ap.NodeVoter,
		}
	}
	return out
}

// RemoveFailedServer is never called: dead servers are removed by an
// operator, not automatically.
func (p *integration) RemoveFailedServer(*ap.Server) {}

// promoter promotes every non-voter that has been healthy for the
// stabilization time, on the pilot's clock, except read replicas.
type promoter struct {
	ap.StablePromoter
	clock   Clock
	replica func(id string) bool
}

func (p *promoter) CalculatePromotionsAndDemotions(c *ap.Config, s *ap.State) ap.RaftChanges {
	var changes ap.RaftChanges
	now := p.clock.Now()
	for id, srv := range s.Servers {
		if srv.State == ap.RaftNonVoter && srv.Health.IsStable(now, c.ServerStabilizationTime) && !p.replica(string(id)) {
			changes.Promotions = append(changes.Promotions, id)
		}
	}
	return changes
}
