package group

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// Removed is closed once this node has learnt that it was removed from the
// cluster: it will never be a member again under this identity (raftkvd
// exits; started again with -join it joins as a new member).
func (s *Membership) Removed() <-chan struct{} { return s.removed }

// watchRemoval notices this node's removal: from its own configuration,
// once the removal entry reached it, or, when it has known no leader for a
// while (the leader stops replicating to a removed node, so the entry may
// never arrive), from a peer's newer configuration without it.
func (s *Membership) watchRemoval() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	member := false
	var leaderless time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		f := s.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		cfg, index := f.Configuration(), f.Index()
		if inConfig(cfg, s.id) {
			member = true
		} else if member {
			s.markRemoved("the cluster's configuration no longer lists this node")
			return
		}
		if addr, _ := s.group().Leader(); addr != "" || !member {
			leaderless = time.Time{}
			continue
		}
		if leaderless.IsZero() {
			leaderless = time.Now()
		}
		if time.Since(leaderless) < 5*s.cfg.ElectionTimeout {
			continue
		}
		for _, srv := range cfg.Servers {
			if srv.ID == raft.ServerID(s.id) {
				continue
			}
			if peerIndex, ids, ok := s.peerConfiguration(string(srv.Address)); ok && peerIndex > index && !ids[s.id] {
				s.markRemoved("a newer configuration on " + string(srv.ID) + " no longer lists this node")
				return
			}
		}
	}
}

func inConfig(cfg raft.Configuration, id string) bool {
	for _, srv := range cfg.Servers {
		if string(srv.ID) == id {
			return true
		}
	}
	return false
}

// peerConfiguration reads the raft configuration a peer serves (its own
// view, at its index).
func (s *Membership) peerConfiguration(addr string) (uint64, map[string]bool, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, s.group().peerTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/operator/raft/configuration?stale", nil)
	if err != nil {
		return 0, nil, false
	}
	if s.cfg.ACLToken != "" {
		req.Header.Set("X-Consul-Token", s.cfg.ACLToken) // operator read
	}
	resp, err := s.peers.HTTP().Do(req)
	if err != nil {
		return 0, nil, false
	}
	defer resp.Body.Close()
	var out struct {
		Servers []struct{ ID string }
		Index   uint64
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return 0, nil, false
	}
	ids := map[string]bool{}
	for _, srv := range out.Servers {
		ids[srv.ID] = true
	}
	return out.Index, ids, true
}

func (s *Membership) markRemoved(why string) {
	s.removedOnce.Do(func() {
		s.logger.Warn("this node was removed from the cluster; it stops serving", "why", why)
		close(s.removed)
	})
}
