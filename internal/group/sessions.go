package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/sessions"
	"github.com/raftkv/raftkv/kv"
)

// Sessions: the state lives in the FSM (package fsm), the timers and node
// health on the leader (package sessions); this file connects them. A
// create is stamped on the leader (its ID, and a check that its node is a
// member) before it is proposed, so every node applies the same command.

// CreateSession creates a session and returns its ID. Empty fields take
// Consul's defaults, except NodeChecks: nil means none (the HTTP API
// applies the serfHealth default).
func (s *Group) CreateSession(ctx context.Context, spec kv.Session) (string, error) {
	if spec.Node == "" {
		spec.Node = s.id
	}
	if spec.Behavior == "" {
		spec.Behavior = kv.BehaviorRelease
	}
	if err := spec.Validate(s.cfg.SessionTTLMin); err != nil {
		return "", err
	}
	spec.ID, spec.CreateIndex, spec.ModifyIndex = "", 0, 0
	res, err := s.Apply(ctx, &kv.Command{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Value: fsm.EncodeSession(&spec)}}})
	if err != nil {
		return "", err
	}
	if !res.OK || len(res.Entries) != 1 {
		return "", fmt.Errorf("raftstore: session create refused: %v", res.Errors)
	}
	return res.Entries[0].Session, nil
}

// DestroySession invalidates a session: the keys it holds are released or
// deleted (its behaviour) and stay under lock-delay. An unknown session is
// not an error.
func (s *Group) DestroySession(ctx context.Context, id string) error {
	if id == "" {
		return kv.Errorf(kv.ErrInvalid, "Missing session")
	}
	_, err := s.Apply(ctx, &kv.Command{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy, Session: id}}})
	return err
}

// RenewSession restarts a session's TTL on the leader (nothing goes through
// the log) and returns the session.
func (s *Group) RenewSession(ctx context.Context, id string) (kv.Session, error) {
	if id == "" {
		return kv.Session{}, kv.Errorf(kv.ErrInvalid, "Missing session")
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var out kv.Session
	err := s.onLeader(ctx, func() (err error) {
		out, err = s.renewLocal(ctx, id)
		return err
	}, func(ep leaderwatch.Epoch) (err error) {
		s.metrics.forwarded.WithLabelValues("renew").Inc()
		cctx, cancel := peerContext(ctx, ep, s.peerTimeout())
		defer cancel()
		out, err = s.peers.Renew(cctx, ep.Leader, id)
		return err
	})
	return out, err
}

// renewLocal renews on this node, once it has confirmed that it still leads
// and applied everything committed: a deposed leader that does not know it
// yet must not answer (its timers no longer count, and a session created
// under the new leader would look missing to it).
func (s *Group) renewLocal(ctx context.Context, id string) (kv.Session, error) {
	if err := s.linearize(ctx); err != nil {
		return kv.Session{}, fmt.Errorf("renew: %w", err)
	}
	renewal := s.sessions.Renew(id)
	switch renewal {
	case sessions.NotLeading:
		return kv.Session{}, fmt.Errorf("%w: session timers are not running here yet", kv.ErrNoLeader)
	case sessions.Doomed:
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id '%s' not found", id)
	}
	sess, _, ok, err := s.fsm.Session(id)
	if err != nil {
		return kv.Session{}, err
	}
	if !ok {
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id '%s' not found", id)
	}
	if renewal == sessions.Unknown { // applied here just before the timers heard of it
		s.sessions.Created(sess)
	}
	return sess, nil
}

// Sessions answers a session query (see kv.SessionQuery).
func (s *Group) Sessions(ctx context.Context, q kv.SessionQuery) (*kv.SessionResult, error) {
	leaderLost, err := s.readPoint(ctx, q.Stale)
	if err != nil {
		return nil, err
	}
	var res *kv.SessionResult
	read := func() (uint64, error) {
		var err error
		res, err = s.readSessions(q)
		if err != nil {
			return 0, err
		}
		return res.Index, nil
	}
	if q.MinIndex == 0 {
		_, err := read()
		return res, err
	}
	err = s.blockOn(ctx, s.sessionWatch, "", false, q.MinIndex, q.Wait, leaderLost, read)
	return res, err
}

// HeldKeys returns the keys each session holds (see fsm.HeldKeys),
// linearizable unless stale. Not part of Consul's API: the web UI shows
// what sessions hold without listing the whole keyspace.
func (s *Group) HeldKeys(ctx context.Context, stale bool) (map[string][]string, error) {
	if !stale {
		if err := s.linearize(ctx); err != nil {
			return nil, err
		}
	}
	held, err := s.fsm.HeldKeys()
	if err != nil {
		return nil, fmt.Errorf("keys held by sessions: %w", err)
	}
	return held, nil
}

func (s *Group) readSessions(q kv.SessionQuery) (*kv.SessionResult, error) {
	res := &kv.SessionResult{Stale: q.Stale, Sessions: []kv.Session{}}
	var err error
	if q.ID != "" {
		var sess kv.Session
		var ok bool
		if sess, res.Index, ok, err = s.fsm.Session(q.ID); ok {
			res.Sessions = append(res.Sessions, sess)
		}
	} else {
		res.Sessions, res.Index, err = s.fsm.Sessions(q.Node)
	}
	if err != nil {
		return nil, err
	}
	res.KnownLeader, res.LastContact = s.leaderMeta()
	return res, nil
}

// stampSession is applyLocal's work on a session command before it is
// proposed: a create gets its ID here, on the leader, and its node must be
// a member of the cluster.
func (s *Group) stampSession(c *kv.Command) error {
	if len(c.Ops) != 1 || c.Ops[0].Verb != kv.VerbSessionCreate || c.Ops[0].Session != "" {
		return nil
	}
	spec, err := fsm.DecodeSession(c.Ops[0].Value)
	if err != nil {
		return fmt.Errorf("%w: session: %v", kv.ErrInvalid, err)
	}
	member := false
	for _, srv := range s.raft.GetConfiguration().Configuration().Servers {
		member = member || string(srv.ID) == spec.Node
	}
	if !member {
		return kv.Errorf(kv.ErrSession, "Missing node registration")
	}
	ops := []kv.Op{c.Ops[0]}
	ops[0].Session = uuid.NewString()
	c.Ops = ops
	return nil
}

// sessionApplied tells the timers about a session command the leader
// applied.
func (s *Group) sessionApplied(c *kv.Command, res *kv.Result) {
	if len(c.Ops) != 1 || !res.OK {
		return
	}
	switch op := c.Ops[0]; op.Verb {
	case kv.VerbSessionCreate:
		if sess, _, ok, err := s.fsm.Session(op.Session); err == nil && ok {
			s.sessions.Created(sess)
		}
	case kv.VerbSessionDestroy:
		s.sessions.Destroyed(op.Session)
	}
}

// leadSessions starts the timers once this node leads with everything
// committed applied (after its barrier).
func (s *Group) leadSessions() {
	all, _, err := s.fsm.Sessions("")
	if err != nil {
		s.logger.Error("cannot load sessions: their timers do not run", "err", err)
		return
	}
	var members []string
	for _, srv := range s.raft.GetConfiguration().Configuration().Servers {
		members = append(members, string(srv.ID))
	}
	s.sessions.Lead(all, members)
}

// invalidateSession proposes the destroy of a session whose TTL ran out or
// whose node failed (sessions.Manager calls it on the leader).
func (s *Group) invalidateSession(id, why string) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ApplyTimeout)
	defer cancel()
	if !s.IsLeader() {
		return errors.New("not the leader")
	}
	_, err := s.applyLocal(ctx, &kv.Command{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy, Session: id}}})
	if err == nil {
		s.logger.Info("session invalidated", "session", id, "why", why)
	}
	return err
}

// peerContacts records when each peer last answered an AppendEntries of
// this node (a heartbeat every HeartbeatTimeout/10 while it leads). Raft's
// own FailedHeartbeatObservation is not enough for node checks: with
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

// watchPeers feeds the leader's view of each node's health to the session
// timers: a node not heard from for a few heartbeat intervals is failing
// (critical once kv.NodeFailAfter has passed since it was last heard, or
// since this node became leader; its sessions then go once their Lease has
// passed since their last renew), one heard again is healthy, one removed
// from the configuration is critical at once.
func (s *Group) watchPeers() {
	ch := make(chan raft.Observation, 256)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.PeerObservation)
		return ok
	})
	s.raft.RegisterObserver(obs)
	defer s.raft.DeregisterObserver(obs)
	tick := time.NewTicker(s.cfg.HeartbeatTimeout / 2)
	defer tick.Stop()
	var leadSince time.Time
	for {
		select {
		case o := <-ch:
			if d := o.Data.(raft.PeerObservation); d.Removed {
				s.sessions.NodeRemoved(string(d.Peer.ID))
			}
		case <-tick.C:
			if !s.IsLeader() {
				leadSince = time.Time{}
				continue
			}
			now := time.Now()
			if leadSince.IsZero() {
				leadSince = now
			}
			for _, srv := range s.raft.GetConfiguration().Configuration().Servers {
				id := string(srv.ID)
				if id == s.id {
					continue
				}
				last := s.contacts.last(id)
				if last.Before(leadSince) {
					last = leadSince
				}
				if now.Sub(last) > s.cfg.HeartbeatTimeout {
					s.sessions.NodeFailing(id, last)
				} else {
					s.sessions.NodeHealthy(id)
				}
			}
		case <-s.raftDone:
			return
		}
	}
}
