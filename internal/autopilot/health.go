package autopilot

import (
	"sort"

	"github.com/hashicorp/raft"
	ap "github.com/hashicorp/raft-autopilot"

	"github.com/raftkv/raftkv/kv"
)

// report turns a pilot state and the servers' last stats into the health
// report, servers sorted by ID.
func report(s *ap.State, stats map[raft.ServerID]Stats) kv.AutopilotHealth {
	h := kv.AutopilotHealth{Healthy: s.Healthy, FailureTolerance: s.FailureTolerance}
	for _, srv := range s.Servers {
		lc := "never"
		if srv.Stats.LastContact >= 0 {
			lc = srv.Stats.LastContact.String()
		}
		h.Servers = append(h.Servers, kv.ServerHealth{
			ID:           string(srv.Server.ID),
			Name:         srv.Server.Name,
			Address:      string(srv.Server.Address),
			SerfStatus:   string(srv.Server.NodeStatus),
			Version:      srv.Server.Version,
			Leader:       srv.State == ap.RaftLeader,
			Voter:        srv.HasVotingRights(),
			Healthy:      srv.Health.Healthy,
			LastContact:  lc,
			LastTerm:     srv.Stats.LastTerm,
			LastIndex:    srv.Stats.LastIndex,
			StableSince:  srv.Health.StableSince,
			CommitIndex:  stats[srv.Server.ID].CommitIndex,
			AppliedIndex: stats[srv.Server.ID].AppliedIndex,
		})
	}
	sort.Slice(h.Servers, func(i, j int) bool { return h.Servers[i].ID < h.Servers[j].ID })
	return h
}
