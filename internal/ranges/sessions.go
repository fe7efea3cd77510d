package ranges

import (
	"context"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// Sessions live in range 0; their locks live wherever their keys are.
//
// An acquire in another range is proposed only after range 0 has been
// read linearizably and has the session (checkSessions). When range 0
// invalidates a session (destroyed, TTL, node health), it records the
// release in the other ranges as pending; the node leading range 0 then
// proposes a session-release entry to every other range and, once each
// has applied it, tells range 0 it is done (releasePending). A range that
// applied the release refuses any later acquire by the session (package
// fsm, sessions.go), so an acquire that raced the invalidation is released
// or refused, never left holding a lock.

// checkSessions refuses, with the answer range 0 would give, a command
// that acquires for a session range 0 does not have.
func (s *Set) checkSessions(ctx context.Context, at local, cmd *kv.Command) (*kv.Result, error) {
	if at.d.ID == 0 {
		return nil, nil // range 0 checks in the same transaction
	}
	linearized := false
	for i, op := range cmd.Ops {
		if op.Verb != kv.VerbLock {
			continue
		}
		if !linearized {
			if err := s.meta.Linearize(ctx); err != nil {
				return nil, err
			}
			linearized = true
		}
		_, _, ok, err := s.meta.FSM().Session(op.Session)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &kv.Result{Errors: []kv.OpError{{OpIndex: i, What: fmt.Sprintf("invalid session %q", op.Session), InvalidSession: true}}}, nil
		}
	}
	return nil, nil
}

// releaseInterval is how often the node leading range 0 looks for
// releases to make.
const releaseInterval = 50 * time.Millisecond

// releasePending runs, until stop, the releases range 0 records, while
// this node leads range 0.
func (s *Set) releasePending(base context.Context) {
	t := time.NewTicker(releaseInterval)
	defer t.Stop()
	for {
		select {
		case <-base.Done():
			return
		case <-t.C:
		}
		if !s.meta.IsLeader() {
			continue
		}
		pending, err := s.meta.FSM().PendingReleases()
		if err != nil {
			s.logger.Error("cannot read the pending session releases", "err", err)
			continue
		}
		for _, sess := range pending {
			ctx, cancel := context.WithTimeout(base, 10*time.Second)
			err := s.releaseEverywhere(ctx, sess)
			if err == nil {
				_, err = s.meta.Propose(ctx, fsm.ReleaseDoneEntry(sess.ID))
			}
			cancel()
			if err != nil {
				s.logger.Warn("session release in the other ranges not done yet; retrying", "session", sess.ID, "err", err)
				break
			}
		}
	}
}

// releaseEverywhere has every range but 0 let go of sess. Ranges a split
// makes meanwhile are found: the view is taken after every local replica
// has caught up with its leader (a split applied before that is in it),
// and a range split after its release inherits the release.
func (s *Set) releaseEverywhere(ctx context.Context, sess kv.Session) error {
	done := map[uint64]bool{0: true}
	for {
		v, err := s.caughtUpView(ctx)
		if err != nil {
			return err
		}
		more := false
		for _, l := range v {
			if done[l.d.ID] {
				continue
			}
			more = true
			if _, err := l.g.Propose(ctx, fsm.SessionReleaseEntry(sess)); err != nil {
				return fmt.Errorf("release session %s in range %d: %w", sess.ID, l.d.ID, err)
			}
			done[l.d.ID] = true
		}
		if !more {
			return nil
		}
	}
}

// caughtUpView is the local ranges once each has applied what its leader
// had committed and the ranges cover the whole keyspace.
func (s *Set) caughtUpView(ctx context.Context) ([]local, error) {
	v, _ := s.view()
	for _, l := range v {
		if err := l.g.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	for {
		v, changed := s.view()
		if _, complete := ofPrefix(v, ""); complete {
			return v, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
