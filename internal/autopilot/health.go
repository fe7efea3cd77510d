package autopilot

import (
	"sort"

	ap "github.com/hashicorp/raft-autopilot"

	"github.com/raftkv/raftkv/kv"
)

// Report turns a pilot state into the health report, servers sorted by ID.
func Report(s *ap.State) kv.AutopilotHealth {
	h := kv.AutopilotHealth{Healthy: s.Healthy, FailureTolerance: s.FailureTolerance}
	for _, srv := range s.Servers {
		lc := "never"
		if srv.Stats.LastContact >= 0 {
			lc = srv.Stats.LastContact.String()
		}
		h.Servers = append(h.Servers, kv.ServerHealth{
			ID:          string(srv.Server.ID),
			Name:        srv.Server.Name,
			Address:     string(srv.Server.Address),
			SerfStatus:  string(srv.Server.NodeStatus),
			Version:     srv.Server.Version,
			Leader:      srv.State == ap.RaftLeader,
			Voter:       srv.HasVotingRights(),
			Healthy:     srv.Health.Healthy,
			LastContact: lc,
			LastTerm:    srv.Stats.LastTerm,
			LastIndex:   srv.Stats.LastIndex,
			StableSince: srv.Health.StableSince,
		})
	}
	sort.Slice(h.Servers, func(i, j int) bool { return h.Servers[i].ID < h.Servers[j].ID })
	return h
}
