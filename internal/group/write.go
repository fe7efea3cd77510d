package group

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/fwdstream"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/kv"
)

// Apply runs a KV write on the cluster (see Propose).
func (s *Group) Apply(ctx context.Context, cmd *kv.Command) (*kv.Result, error) {
	return s.Propose(ctx, fsm.KVEntry(cmd))
}

// Propose runs a log entry on the group: proposed here if this node leads,
// forwarded to the leader otherwise (see onLeader). It is checked here,
// where it enters the cluster, and again by the leader it is forwarded to
// (ApplyForwarded); nowhere else. A KV write then passes the caller's own
// check, if its context carries one (kv.WithCheck: the HTTP API's
// authorization). Attempts that certainly did nothing are retried while a
// leader can be found, within the context's deadline or ApplyTimeout.
//
// Errors: kv.ErrNoLeader (not applied), kv.ErrUnknownOutcome (maybe
// applied), kv.ErrInvalid / kv.ErrTooLarge (rejected, nothing done).
// A command whose checks fail is not an error: Result.OK is false.
func (s *Group) Propose(ctx context.Context, e *fsm.Entry) (*kv.Result, error) {
	if err := s.checkEntry(ctx, e); err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var res *kv.Result
	var maybeApplied error // an attempt whose fate is unknown
	// retryKeyed turns the unknown outcome of a keyed attempt (proposed
	// here by a leader that lost its leadership, or sent to one that
	// changed or went silent) into a retry: the key makes a second attempt
	// safe, since if the first one applied, the state machine answers with
	// its result and applies nothing.
	retryKeyed := func(err error) error {
		if errors.Is(err, kv.ErrUnknownOutcome) && e.IdempotencyKey != "" && ctx.Err() == nil {
			maybeApplied = err
			return fmt.Errorf("%w: retrying a keyed write: %v", kv.ErrNoLeader, err)
		}
		return err
	}
	err := s.onLeader(ctx, func() (err error) {
		res, err = s.applyLocal(ctx, e)
		return retryKeyed(err)
	}, func(ep leaderwatch.Epoch) (err error) {
		s.metrics.forwarded.WithLabelValues("apply").Inc()
		cctx, cancel := peerContext(ctx, ep, s.forwardTimeout())
		defer cancel()
		start := time.Now()
		res, err = s.forward(cctx, ep.Leader, e)
		s.metrics.forwardLatency.Observe(time.Since(start).Seconds())
		return retryKeyed(err)
	})
	if maybeApplied != nil && err != nil {
		// Whatever the retry met (no leader, a full disk, a refusal), an
		// earlier attempt may have applied: never "not applied" then.
		return nil, maybeApplied
	}
	return res, err
}

// limits are what this node accepts.
func (s *Group) limits() fsm.Limits {
	return fsm.Limits{MaxValueBytes: s.cfg.MaxValueBytes, SessionTTLMin: s.cfg.SessionTTLMin}
}

// checkEntry is the check at entry: the entry's own validity, then the
// caller's check of a KV write (kv.WithCheck: the HTTP API's
// authorization).
func (s *Group) checkEntry(ctx context.Context, e *fsm.Entry) error {
	if err := e.Validate(s.limits()); err != nil {
		return err
	}
	if check := kv.CheckOf(ctx); check != nil && e.Kind == fsm.KindKV {
		return check(e.KV.Ops)
	}
	return nil
}

// forward sends an entry to this group's leader at addr, routed by the
// range as this replica has it.
func (s *Group) forward(ctx context.Context, addr string, e *fsm.Entry) (*kv.Result, error) {
	return s.send(ctx, addr, s.cfg.ID, s.fsm.Descriptor().Generation, wireForm(e))
}

// wireForm encodes an entry to travel to a leader: in the legacy form,
// which leaders of every release read (a kind without one, in the typed
// form: a leader that cannot read it refuses it); the leader writes it to
// the log in the form its members read (logForm).
func wireForm(e *fsm.Entry) []byte {
	if e.Kind.HasLegacyForm() {
		return fsm.EncodeLegacyEntry(e)
	}
	return fsm.EncodeEntry(e)
}

// send hands a command for group to its leader at addr: on the forwarding
// stream, or by HTTP when that peer cannot take one (nothing was sent
// then). generation is the route: the range's generation as the sender
// knows it.
func (s *Group) send(ctx context.Context, addr string, group, generation uint64, command []byte) (*kv.Result, error) {
	res, err := s.forwards.Apply(ctx, addr, group, generation, command)
	if errors.Is(err, fwdstream.ErrUnavailable) {
		s.metrics.forwarded.WithLabelValues("apply_http").Inc()
		return s.host.Peers(group).Apply(ctx, addr, generation, command)
	}
	return res, err
}

// ProposeElsewhere runs a KV entry on a range this node holds no replica
// of (yet: a node that just joined), known from the meta range's copy of
// the range map: it is checked as Propose checks it, then sent to the
// range's replicas at addrs in turn, with the copy's generation as its
// route, until one that leads the range answers. A replica that does not
// lead it refuses without doing anything (kv.ErrNoLeader), so trying the
// next one is safe; any other answer, an unknown outcome included, is
// returned as it is. All refusing: kv.ErrNoLeader.
func (s *Group) ProposeElsewhere(ctx context.Context, group, generation uint64, addrs []string, e *fsm.Entry) (*kv.Result, error) {
	if err := s.checkEntry(ctx, e); err != nil {
		return nil, err
	}
	command := wireForm(e)
	err := fmt.Errorf("%w: range %d has no replica to ask", kv.ErrNoLeader, group)
	ctx, cancel := context.WithTimeout(ctx, s.forwardTimeout()) // for all of them: a node cut off answers fast
	defer cancel()
	for _, addr := range addrs {
		cctx, cancel := context.WithTimeout(ctx, s.forwardTimeout())
		var res *kv.Result
		res, err = s.send(cctx, addr, group, generation, command)
		cancel()
		if !errors.Is(err, kv.ErrNoLeader) {
			if err == nil {
				s.metrics.forwarded.WithLabelValues("apply_elsewhere").Inc()
			}
			return res, err
		}
	}
	return nil, err
}

// applyLocal proposes e on this node, which believes it leads. The
// leader stamps the time itself, whatever the caller sent: the state
// machine's clock (expiry of tombstones and idempotency keys) must not be
// settable from outside. The features' Stamp hooks run next (a session
// create gets its ID here), and their Applied hooks see the result.
func (s *Group) applyLocal(ctx context.Context, e *fsm.Entry) (*kv.Result, error) {
	if err := s.spaceForWrite(e); err != nil {
		return nil, err
	}
	if err := s.inSpan(e); err != nil {
		return nil, err
	}
	c := *e
	c.Time = time.Now()
	if c.KV != nil {
		kvc := *c.KV
		kvc.Time = c.Time
		c.KV = &kvc
	}
	if err := s.hooks.stamp(&c); err != nil {
		return nil, err
	}
	e = &c
	data, err := s.encode(e)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	future := s.raft.Apply(data, enqueueTimeout(ctx))
	done := make(chan error, 1)
	go func() { done <- future.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v while waiting for commit", kv.ErrUnknownOutcome, ctx.Err())
	}
	s.metrics.applyLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, classifyApplyError(err)
	}
	switch resp := future.Response().(type) {
	case *kv.Result:
		s.hooks.applied(e, resp)
		return resp, nil
	case error:
		return nil, resp
	default:
		return nil, fmt.Errorf("group: unexpected FSM response %T", resp)
	}
}

// classifyApplyError maps raft's errors to "not applied" or "unknown".
func classifyApplyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused before the entry was dispatched: certainly not applied.
		return fmt.Errorf("%w: %v", kv.ErrNoLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
		// The entry may be in some logs and may yet commit.
		return fmt.Errorf("%w: %v", kv.ErrUnknownOutcome, err)
	default:
		return fmt.Errorf("%w: %v", kv.ErrUnknownOutcome, err)
	}
}

func enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

func (s *Group) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.ApplyTimeout)
}

// checkRoute checks a forwarded write's route, the generation of the range
// on the node that sent it, against this leader's replica. A sender ahead
// (it applied a split this leader's replica has not applied yet) makes the
// leader wait for its replica, a heartbeat timeout at most, so that inSpan
// judges by the same span and refuses, before the write takes a log entry,
// a key the split moved. The wait is bounded because generations are a
// hint, not a guarantee (a replica restored from a backup keeps its own):
// the state machine checks every key against its span at apply anyway. A
// sender behind learns, if a key moved, the range as it is now (inSpan).
// 0: a sender of a release without generations.
func (s *Group) checkRoute(ctx context.Context, generation uint64) {
	if generation <= s.fsm.Descriptor().Generation {
		return
	}
	t := time.NewTimer(s.cfg.HeartbeatTimeout)
	defer t.Stop()
	for generation > s.fsm.Descriptor().Generation {
		changed := s.fsm.AppliedChanged()
		if generation <= s.fsm.Descriptor().Generation {
			return
		}
		select {
		case <-changed:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// inSpan refuses, before it takes a log entry, a KV write for a key the
// range no longer holds as the leader has it (a route from before a
// split): the node that routed it retries on the right range. The state
// machine checks again at apply, for a split ordered between the two.
func (s *Group) inSpan(e *fsm.Entry) error {
	if e.Kind != fsm.KindKV || e.KV == nil {
		return nil
	}
	span := s.fsm.Descriptor()
	for i, op := range e.KV.Ops {
		if op.Verb != kv.VerbGetTree && op.Verb != kv.VerbDeleteTree && !span.Contains(op.Key) {
			return fmt.Errorf("%w: op %d: %q is not in %s", kv.ErrRangeMoved, i, op.Key, span)
		}
	}
	return nil
}
