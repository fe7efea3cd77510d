package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// Group is what the sessions of a raft group need of it (package group).
type Group interface {
	Attach(group.Hooks)
	ID() string
	IsLeader() bool
	Members() []string
	LastHeard(id string) time.Time
	HeartbeatTimeout() time.Duration
	Logger() *slog.Logger
	Propose(ctx context.Context, e *fsm.Entry) (*kv.Result, error)
	ProposeHere(ctx context.Context, e *fsm.Entry) (*kv.Result, error)
	FSM() *fsm.FSM
	Linearize(ctx context.Context) error
	OnLeader(ctx context.Context, kind string, local func(context.Context) error, remote func(context.Context, string) error) error
	Peers() *peerrpc.Client
	ReadBlocking(ctx context.Context, stale bool, on group.Watched, minIndex uint64, wait time.Duration, read func() (uint64, error)) error
	LeaderMeta() (bool, time.Duration)
}

// Service is a group's sessions: the state lives in the FSM (package fsm),
// the timers and node health on the leader (Manager); Service connects
// them. A create is stamped on the leader (its ID, and a check that its
// node is a member) before it is proposed, so every node applies the same
// entry.
type Service struct {
	g      Group
	timers *Manager
	logger *slog.Logger

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Attach starts the sessions of g: its hooks, and the loop that feeds the
// leader's view of each node's health to the timers.
func Attach(g Group) *Service {
	s := &Service{g: g, logger: g.Logger(), stop: make(chan struct{})}
	s.timers = New(RealClock{}, s.invalidate)
	g.Attach(group.Hooks{
		LeadershipChanged: func(leading bool) {
			if !leading {
				s.timers.Step()
			}
		},
		Led:         s.lead,
		Stamp:       s.stamp,
		Applied:     s.applied,
		PeerRemoved: s.timers.NodeRemoved,
	})
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.watchPeers() }()
	return s
}

// Quiesce stops the timers and the health loop: the group is going away,
// and no invalidation may start meanwhile.
func (s *Service) Quiesce() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.timers.Step()
	s.wg.Wait()
}

// Close waits for invalidations in flight (after the group has closed).
func (s *Service) Close() {
	s.Quiesce()
	s.timers.Close()
}

// CreateSession creates a session and returns its ID. Empty fields take
// Consul's defaults, except NodeChecks: nil means none (the HTTP API
// applies the serfHealth default).
func (s *Service) CreateSession(ctx context.Context, spec kv.Session) (string, error) {
	if spec.Node == "" {
		spec.Node = s.g.ID()
	}
	if spec.Behavior == "" {
		spec.Behavior = kv.BehaviorRelease
	}
	spec.ID, spec.CreateIndex, spec.ModifyIndex = "", 0, 0
	res, err := s.g.Propose(ctx, fsm.SessionCreateEntry(spec))
	if err != nil {
		return "", err
	}
	if !res.OK || len(res.Entries) != 1 {
		return "", fmt.Errorf("sessions: create refused: %v", res.Errors)
	}
	return res.Entries[0].Session, nil
}

// DestroySession invalidates a session: the keys it holds are released or
// deleted (its behaviour) and stay under lock-delay. An unknown session is
// not an error.
func (s *Service) DestroySession(ctx context.Context, id string) error {
	_, err := s.g.Propose(ctx, fsm.SessionDestroyEntry(id))
	return err
}

// RenewSession restarts a session's TTL on the leader (nothing goes through
// the log) and returns the session.
func (s *Service) RenewSession(ctx context.Context, id string) (kv.Session, error) {
	if id == "" {
		return kv.Session{}, kv.Errorf(kv.ErrInvalid, "Missing session")
	}
	var out kv.Session
	err := s.g.OnLeader(ctx, "renew", func(ctx context.Context) (err error) {
		out, err = s.Renew(ctx, id)
		return err
	}, func(ctx context.Context, leader string) (err error) {
		out, err = s.g.Peers().Renew(ctx, leader, id)
		return err
	})
	return out, err
}

// Renew renews on this node, once it has confirmed that it still leads
// and applied everything committed: a deposed leader that does not know it
// yet must not answer (its timers no longer count, and a session created
// under the new leader would look missing to it). Peers call it (package
// peerrpc) with the renewals they forward.
func (s *Service) Renew(ctx context.Context, id string) (kv.Session, error) {
	if err := s.g.Linearize(ctx); err != nil {
		return kv.Session{}, fmt.Errorf("renew: %w", err)
	}
	renewal := s.timers.Renew(id)
	switch renewal {
	case NotLeading:
		return kv.Session{}, fmt.Errorf("%w: session timers are not running here yet", kv.ErrNoLeader)
	case Doomed:
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id '%s' not found", id)
	}
	sess, _, ok, err := s.g.FSM().Session(id)
	if err != nil {
		return kv.Session{}, err
	}
	if !ok {
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id '%s' not found", id)
	}
	if renewal == Unknown { // applied here just before the timers heard of it
		s.timers.Created(sess)
	}
	return sess, nil
}

// Sessions answers a session query (see kv.SessionQuery).
func (s *Service) Sessions(ctx context.Context, q kv.SessionQuery) (*kv.SessionResult, error) {
	var res *kv.SessionResult
	err := s.g.ReadBlocking(ctx, q.Stale, group.Watched{Sessions: true}, q.MinIndex, q.Wait, func() (uint64, error) {
		var err error
		res, err = s.read(q)
		if err != nil {
			return 0, err
		}
		return res.Index, nil
	})
	return res, err
}

// HeldKeys returns the keys each session holds (see fsm.HeldKeys),
// linearizable unless stale. Not part of Consul's API: the web UI shows
// what sessions hold without listing the whole keyspace.
func (s *Service) HeldKeys(ctx context.Context, stale bool) (map[string][]string, error) {
	if !stale {
		if err := s.g.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	held, err := s.g.FSM().HeldKeys()
	if err != nil {
		return nil, fmt.Errorf("keys held by sessions: %w", err)
	}
	return held, nil
}

func (s *Service) read(q kv.SessionQuery) (*kv.SessionResult, error) {
	res := &kv.SessionResult{Stale: q.Stale, Sessions: []kv.Session{}}
	var err error
	if q.ID != "" {
		var sess kv.Session
		var ok bool
		if sess, res.Index, ok, err = s.g.FSM().Session(q.ID); ok {
			res.Sessions = append(res.Sessions, sess)
		}
	} else {
		res.Sessions, res.Index, err = s.g.FSM().Sessions(q.Node)
	}
	if err != nil {
		return nil, err
	}
	res.KnownLeader, res.LastContact = s.g.LeaderMeta()
	return res, nil
}

// stamp gives a session create its ID, on the leader, and checks that its
// node is a member of the cluster.
func (s *Service) stamp(e *fsm.Entry) error {
	if e.Kind != fsm.KindSessionCreate || e.Session == nil || e.Session.ID != "" {
		return nil
	}
	member := false
	for _, id := range s.g.Members() {
		member = member || id == e.Session.Node
	}
	if !member {
		return kv.Errorf(kv.ErrSession, "Missing node registration")
	}
	sess := *e.Session
	sess.ID = uuid.NewString()
	e.Session = &sess
	return nil
}

// applied tells the timers about a session entry the leader applied.
func (s *Service) applied(e *fsm.Entry, res *kv.Result) {
	if !res.OK {
		return
	}
	switch e.Kind {
	case fsm.KindSessionCreate:
		if sess, _, ok, err := s.g.FSM().Session(e.Session.ID); err == nil && ok {
			s.timers.Created(sess)
		}
	case fsm.KindSessionDestroy:
		s.timers.Destroyed(e.SessionID)
	}
}

// lead starts the timers once this node leads with everything committed
// applied (after its barrier).
func (s *Service) lead() {
	all, _, err := s.g.FSM().Sessions("")
	if err != nil {
		s.logger.Error("cannot load sessions: their timers do not run", "err", err)
		return
	}
	s.timers.Lead(all, s.g.Members())
}

// invalidate proposes the destroy of a session whose TTL ran out or whose
// node failed (the Manager calls it on the leader).
func (s *Service) invalidate(id, why string) error {
	if !s.g.IsLeader() {
		return errors.New("not the leader")
	}
	_, err := s.g.ProposeHere(context.Background(), fsm.SessionDestroyEntry(id))
	if err == nil {
		s.logger.Info("session invalidated", "session", id, "why", why)
	}
	return err
}

// watchPeers feeds the leader's view of each node's health to the
// timers: a node not heard from for a few heartbeat intervals is failing
// (critical once kv.NodeFailAfter has passed since it was last heard, or
// since this node became leader; its sessions then go once their Lease has
// passed since their last renew), one heard again is healthy. (One removed
// from the configuration is critical at once: the PeerRemoved hook.)
func (s *Service) watchPeers() {
	heartbeat := s.g.HeartbeatTimeout()
	tick := time.NewTicker(heartbeat / 2)
	defer tick.Stop()
	var leadSince time.Time
	for {
		select {
		case <-tick.C:
		case <-s.stop:
			return
		}
		if !s.g.IsLeader() {
			leadSince = time.Time{}
			continue
		}
		now := time.Now()
		if leadSince.IsZero() {
			leadSince = now
		}
		self := s.g.ID()
		for _, id := range s.g.Members() {
			if id == self {
				continue
			}
			last := s.g.LastHeard(id)
			if last.Before(leadSince) {
				last = leadSince
			}
			if now.Sub(last) > heartbeat {
				s.timers.NodeFailing(id, last)
			} else {
				s.timers.NodeHealthy(id)
			}
		}
	}
}
