package autopilot

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	ap "github.com/hashicorp/raft-autopilot"
	"github.com/raftkv/raftkv/kv"
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// Promotion on a fake clock: a healthy non-voter only once it has been
// healthy for the stabilization time; never an unhealthy one, a voter, or
// a read replica.
func TestPromoter(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	replicas := map[string]bool{"replica": true}
	p := &promoter{clock: clock, replica: func(id string) bool { return replicas[id] }}
	conf := &ap.Config{ServerStabilizationTime: 10 * time.Second}
	healthySince := clock.now
	state := &ap.State{Servers: map[raft.ServerID]*ap.ServerState{
		"joined":  {State: ap.RaftNonVoter, Health: ap.ServerHealth{Healthy: true, StableSince: healthySince}},
		"sick":    {State: ap.RaftNonVoter, Health: ap.ServerHealth{Healthy: false, StableSince: healthySince.Add(-time.Hour)}},
		"replica": {State: ap.RaftNonVoter, Health: ap.ServerHealth{Healthy: true, StableSince: healthySince.Add(-time.Hour)}},
		"voter":   {State: ap.RaftVoter, Health: ap.ServerHealth{Healthy: true, StableSince: healthySince.Add(-time.Hour)}},
	}}
	clock.now = healthySince.Add(9 * time.Second)
	if c := p.CalculatePromotionsAndDemotions(conf, state); len(c.Promotions) != 0 {
		t.Fatalf("promoted before the stabilization time: %v", c.Promotions)
	}
	clock.now = healthySince.Add(10 * time.Second)
	c := p.CalculatePromotionsAndDemotions(conf, state)
	if len(c.Promotions) != 1 || c.Promotions[0] != "joined" || len(c.Demotions) != 0 {
		t.Fatalf("after the stabilization time: %+v", c)
	}
}

func TestReport(t *testing.T) {
	since := time.Unix(2000, 0)
	h := report(&ap.State{Healthy: true, FailureTolerance: 1, Servers: map[raft.ServerID]*ap.ServerState{
		"n2": {Server: ap.Server{ID: "n2", Name: "n2", Address: "a2", NodeStatus: ap.NodeAlive}, State: ap.RaftVoter,
			Stats: ap.ServerStats{LastContact: 12 * time.Millisecond, LastTerm: 3, LastIndex: 40}, Health: ap.ServerHealth{Healthy: true, StableSince: since}},
		"n1": {Server: ap.Server{ID: "n1", Name: "n1", Address: "a1", NodeStatus: ap.NodeAlive}, State: ap.RaftLeader,
			Stats: ap.ServerStats{LastTerm: 3, LastIndex: 42}, Health: ap.ServerHealth{Healthy: true, StableSince: since}},
		"n3": {Server: ap.Server{ID: "n3", Name: "n3", Address: "a3", NodeStatus: ap.NodeFailed}, State: ap.RaftNonVoter,
			Stats: ap.ServerStats{LastContact: -1}},
		// n4 answered once and then died: the leader last heard from it 9s ago.
		"n4": {Server: ap.Server{ID: "n4", Name: "n4", Address: "a4", NodeStatus: ap.NodeAlive}, State: ap.RaftVoter,
			Stats: ap.ServerStats{LastContact: 0, LastTerm: 3, LastIndex: 30}},
	}}, map[raft.ServerID]Stats{"n1": {LastIndex: 42}, "n2": {LastIndex: 40, CommitIndex: 39, AppliedIndex: 38}, "n4": {LastIndex: 30}},
		func(id raft.ServerID) time.Duration {
			return map[raft.ServerID]time.Duration{"n1": -1, "n2": 5 * time.Millisecond, "n3": -1, "n4": 9 * time.Second}[id]
		})
	if !h.Healthy || h.FailureTolerance != 1 || len(h.Servers) != 4 || h.Servers[0].ID != "n1" || !h.Servers[0].Leader || !h.Servers[0].Voter || h.Servers[0].LastContact != "0s" {
		t.Fatalf("report: %+v", h)
	}
	if s := h.Servers[1]; s.LastContact != "12ms" || s.LastIndex != 40 || s.CommitIndex != 39 || s.AppliedIndex != 38 || !s.Voter || s.Leader || !s.StableSince.Equal(since) {
		t.Fatalf("n2: %+v", s)
	}
	if s := h.Servers[2]; s.LastContact != "never" || s.Voter || s.Healthy || s.SerfStatus != "failed" {
		t.Fatalf("n3: %+v", s)
	}
	if s := h.Servers[3]; s.LastContact != "9s" {
		t.Fatalf("a dead server's last contact must grow from when the leader last heard from it: %+v", s)
	}
}

// A report pairs each state with the stats it was made from; a server that
// did not answer a round keeps its previous stats, one that left drops.
func TestReportKeepsStatsWithTheirState(t *testing.T) {
	p := &Pilot{}
	in := (*integration)(p)
	state := func(ids ...raft.ServerID) *ap.State {
		s := &ap.State{Servers: map[raft.ServerID]*ap.ServerState{}}
		for _, id := range ids {
			s.Servers[id] = &ap.ServerState{Server: ap.Server{ID: id}}
		}
		return s
	}
	commit := func(h *kv.AutopilotHealth) map[string]uint64 {
		out := map[string]uint64{}
		for _, s := range h.Servers {
			out[s.ID] = s.CommitIndex
		}
		return out
	}
	if p.Report() != nil {
		t.Fatal("a report before the first state")
	}
	p.fetched = map[raft.ServerID]Stats{"n1": {CommitIndex: 5}, "n2": {CommitIndex: 6}}
	in.NotifyState(state("n1", "n2"))
	if c := commit(p.Report()); c["n1"] != 5 || c["n2"] != 6 {
		t.Fatalf("first round: %v", c)
	}
	p.fetched = map[raft.ServerID]Stats{"n1": {CommitIndex: 7}} // n2 did not answer
	in.NotifyState(state("n1", "n2"))
	if c := commit(p.Report()); c["n1"] != 7 || c["n2"] != 6 {
		t.Fatalf("second round: %v", c)
	}
	p.fetched = map[raft.ServerID]Stats{"n1": {CommitIndex: 8}} // n2 left
	in.NotifyState(state("n1"))
	if h := p.Report(); len(h.Servers) != 1 || h.Servers[0].CommitIndex != 8 || len(p.last.Load().stats) != 1 {
		t.Fatalf("after n2 left: %+v", h)
	}
}
