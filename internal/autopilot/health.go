package autopilot

import (
	"sort"
	"time"

	"github.com/hashicorp/raft"
	ap "github.com/hashicorp/raft-autopilot"

	"github.com/raftkv/raftkv/kv"
)

// report turns a pilot state and the servers' last stats into the health
// report, servers sorted by ID. A follower's last contact is the longer of
// what it last reported and how long ago the leader last heard from it
// (sinceHeard; negative: never): a server that stopped answering keeps its
// last report, which must not show it in touch.
func report(s *ap.State, stats map[raft.ServerID]Stats, sinceHeard func(id raft.ServerID) time.Duration) kv.AutopilotHealth {
	h := kv.AutopilotHealth{Healthy: s.Healthy, FailureTolerance: s.FailureTolerance}
	for _, srv := range s.Servers {
		contact := srv.Stats.LastContact
		if _, reported := stats[srv.Server.ID]; !reported {
			contact = -1
		}
		if srv.State != ap.RaftLeader {
			// A leader just elected has not heard from it yet: its report stands.
			if heard := sinceHeard(srv.Server.ID); heard >= 0 {
				contact = max(contact, heard)
			}
		}
		lc := "never"
		if contact >= 0 {
			lc = contact.Round(time.Millisecond).String()
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
