package group

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// Membership is the group's membership: joins, removals, leadership
// transfers, the configuration, autopilot's health report, and noticing
// this node's own removal. It is a view of the group by that concern (the
// same state), as PeerCalls is of its node-to-node calls.
type Membership Group

// Membership is the group's membership.
func (g *Group) Membership() *Membership { return (*Membership)(g) }

func (s *Membership) group() *Group { return (*Group)(s) }

// Join adds a non-voter, which the leader promotes to voter once it has
// been healthy for Config.ServerStabilizationTime (or does nothing if id is
// already a member at addr). Any node accepts it; followers forward it to
// the leader.
func (s *Membership) Join(ctx context.Context, id, addr string) error {
	return s.join(ctx, peerrpc.Membership{Op: "join", ID: id, Address: addr})
}

// JoinReadReplica adds a server that stays a non-voter for good: it serves
// reads, never votes (a voter already at addr is demoted).
func (s *Membership) JoinReadReplica(ctx context.Context, id, addr string) error {
	return s.join(ctx, peerrpc.Membership{Op: "join", ID: id, Address: addr, NonVoter: true})
}

func (s *Membership) join(ctx context.Context, req peerrpc.Membership) error {
	if req.ID == "" || req.Address == "" {
		return fmt.Errorf("%w: join needs an id and an address", kv.ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(req.Address); err != nil {
		return fmt.Errorf("%w: address %q: %v", kv.ErrInvalid, req.Address, err)
	}
	return s.changeMembership(ctx, req)
}

// Remove removes a server from the cluster.
func (s *Membership) Remove(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: remove needs an id", kv.ErrInvalid)
	}
	return s.changeMembership(ctx, peerrpc.Membership{Op: "remove", ID: id})
}

// TransferLeadership hands leadership to the voter id, or to any voter
// raft picks if id is empty.
func (s *Membership) TransferLeadership(ctx context.Context, id string) error {
	return s.changeMembership(ctx, peerrpc.Membership{Op: "transfer", ID: id})
}

// changeMembership runs req on the leader, forwarding and retrying like
// Apply does.
func (s *Membership) changeMembership(ctx context.Context, req peerrpc.Membership) error {
	ctx, cancel := s.group().withTimeout(ctx)
	defer cancel()
	return s.group().onLeader(ctx, func() error {
		return s.changeMembershipLocal(ctx, req)
	}, func(ep leaderwatch.Epoch) error {
		s.metrics.forwarded.WithLabelValues("membership").Inc()
		var cctx context.Context
		var cancel context.CancelFunc
		if req.Op == "transfer" {
			// The leader changing is what a transfer does: only the
			// timeout ends this call.
			cctx, cancel = context.WithTimeout(ctx, s.group().forwardTimeout())
		} else {
			cctx, cancel = peerContext(ctx, ep, s.group().forwardTimeout())
		}
		defer cancel()
		return s.peers.Membership(cctx, ep.Leader, req)
	})
}

func (s *Membership) changeMembershipLocal(ctx context.Context, req peerrpc.Membership) error {
	if !s.group().IsLeader() {
		return fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return classifyApplyError(err)
	}
	servers := cf.Configuration().Servers
	timeout := enqueueTimeout(ctx)
	switch req.Op {
	case "join":
		// The read-replica mark goes first, so that autopilot never sees the
		// server without it; a voter's join clears a mark left from before.
		if replica, err := s.fsm.ReadReplica(req.ID); err != nil {
			return err
		} else if replica != req.NonVoter {
			if _, err := s.group().applyLocal(ctx, fsm.ReplicaMarkEntry(req.ID, req.NonVoter)); err != nil {
				return err
			}
		}
		for _, srv := range servers {
			if string(srv.ID) == req.ID && string(srv.Address) == req.Address {
				if !req.NonVoter || srv.Suffrage != raft.Voter {
					return nil // already a member here
				}
				// A voter turned into a read replica.
				if err := s.raft.DemoteVoter(srv.ID, 0, timeout).Error(); err != nil {
					return classifyApplyError(err)
				}
				s.logger.Info("demoted to read replica", "id", req.ID)
				return nil
			}
		}
		// A server rejoining under a new address, or a new server on a dead
		// one's address: remove the old entry first (rqlite #818).
		for _, srv := range servers {
			if string(srv.ID) == req.ID || string(srv.Address) == req.Address {
				if err := s.raft.RemoveServer(srv.ID, 0, timeout).Error(); err != nil {
					return classifyApplyError(err)
				}
			}
		}
		// A non-voter first: it counts toward quorum only once autopilot
		// has seen it healthy for the stabilization time, so an address
		// where nothing answers can never cost the cluster its majority.
		if err := s.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Address), 0, timeout).Error(); err != nil {
			return classifyApplyError(err)
		}
		if req.NonVoter {
			s.logger.Info("added read replica (a non-voter for good)", "id", req.ID, "address", req.Address)
		} else {
			s.logger.Info("added non-voter; autopilot promotes it once it is stable", "id", req.ID, "address", req.Address,
				"stabilization_time", s.cfg.ServerStabilizationTime)
		}
		return nil
	case "remove":
		for _, srv := range servers {
			if string(srv.ID) == req.ID {
				if err := s.raft.RemoveServer(srv.ID, 0, timeout).Error(); err != nil {
					return classifyApplyError(err)
				}
				s.logger.Info("removed server", "id", req.ID)
				return nil
			}
		}
		return fmt.Errorf("%w: %q is not a member", kv.ErrUnknownPeer, req.ID)
	case "transfer":
		var f raft.Future
		if req.ID == "" {
			others := 0
			for _, srv := range servers {
				if srv.Suffrage == raft.Voter && string(srv.ID) != s.id {
					others++
				}
			}
			if others == 0 {
				// raft would try for its election timeout and then fail.
				return fmt.Errorf("%w: no other voter to hand leadership to", kv.ErrInvalid)
			}
			f = s.raft.LeadershipTransfer()
		} else {
			if req.ID == s.id {
				return nil // already leader
			}
			var target *raft.Server
			for i := range servers {
				if string(servers[i].ID) == req.ID && servers[i].Suffrage == raft.Voter {
					target = &servers[i]
				}
			}
			if target == nil {
				return fmt.Errorf("%w: %q is not a voter", kv.ErrUnknownPeer, req.ID)
			}
			f = s.raft.LeadershipTransferToServer(target.ID, target.Address)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("%w: leadership transfer: %v", kv.ErrNoLeader, err)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown membership op %q", kv.ErrInvalid, req.Op)
	}
}

// IsLeader reports whether this node leads the group now.
func (s *Group) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's address and ID, empty if none is known.
func (s *Group) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// Configuration returns the cluster membership as this node knows it, and
// the index of the last membership change this node has applied.
func (s *Membership) Configuration(ctx context.Context) (kv.Configuration, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return kv.Configuration{}, fmt.Errorf("raftstore: configuration: %w", err)
	}
	_, leaderID := s.raft.LeaderWithID()
	out := kv.Configuration{Index: max(s.fsm.ConfigIndex(), 1)}
	for _, srv := range f.Configuration().Servers {
		out.Servers = append(out.Servers, kv.Server{
			ID:      string(srv.ID),
			Address: string(srv.Address),
			Leader:  srv.ID == leaderID,
			Voter:   srv.Suffrage == raft.Voter,
		})
	}
	return out, nil
}

// WaitForLeader blocks until a leader is known and returns its address.
func (s *Group) WaitForLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.Leader(); addr != "" {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v", kv.ErrNoLeader, ctx.Err())
		case <-s.ctx.Done():
			return "", kv.ErrClosed
		case <-t.C:
		}
	}
}

// Ready reports whether the node knows a leader and has caught up with the
// commit index the leader had when this node first reached it.
func (s *Group) Ready() bool {
	addr, _ := s.Leader()
	return addr != "" && s.caughtUp.Load()
}

func (s *Group) watchReadiness() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !s.caughtUp.Load() {
		if addr, _ := s.Leader(); addr != "" {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			idx, err := s.readIndex(ctx)
			if err == nil {
				err = s.waitApplied(ctx, idx)
			}
			cancel()
			if err == nil {
				s.caughtUp.Store(true)
				s.logger.Info("caught up with the leader", "index", idx)
				return
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// joinLoop asks the -join addresses to add this node until one does, or
// until the node finds itself a member with a known leader (a restart).
func (s *Membership) joinLoop() {
	backoff := 200 * time.Millisecond
	s.logger.Info("joining the cluster", "via", s.cfg.Join)
	hc := s.peers.HTTP() // through the mux's dialer: TLS with this node's certificate when on
	for {
		if s.isMemberWithLeader() {
			return
		}
		for _, addr := range s.cfg.Join {
			if addr == s.addr {
				continue
			}
			err := s.requestJoin(hc, addr)
			if err == nil {
				s.logger.Info("joined cluster", "via", addr)
				return
			}
			s.logger.Warn("join attempt failed; retrying", "via", addr, "err", err, "retry_in", backoff)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Membership) requestJoin(hc *http.Client, addr string) error {
	q := url.Values{"id": {s.id}, "address": {s.addr}}
	if s.cfg.ReadReplica {
		q.Set("voter", "false")
	}
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/v1/operator/raft/peer?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if s.cfg.ACLToken != "" {
		req.Header.Set("X-Consul-Token", s.cfg.ACLToken)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		why, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("join via %s: status %d: %s", addr, resp.StatusCode, strings.TrimSpace(string(why)))
	}
	return nil
}

func (s *Membership) isMemberWithLeader() bool {
	if addr, _ := s.group().Leader(); addr == "" {
		return false
	}
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.id && string(srv.Address) == s.addr {
			return true
		}
	}
	return false
}
