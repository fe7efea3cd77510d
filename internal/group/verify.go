package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/peerrpc"
)

// verifier confirms, for ReadIndex, that this node still led its term after
// a read arrived: a majority of voters (itself included) report, after the
// round began, a term no higher than the leader's. A leader of any later
// term was elected by a majority whose terms had already moved to it, and
// any two majorities share a voter, so none can exist yet.
//
// This is the check hashicorp/raft's VerifyLeader makes with heartbeats, but
// VerifyLeader is served by raft's leader loop, which stores each batch of
// log entries (two fsyncs) before it looks at anything else. Under writes
// that put one or two log fsyncs in front of every read; this check never
// touches the leader loop. It also closes VerifyLeader's window of counting
// a heartbeat sent before the round began: every probe here is sent after.
//
// One round serves every read that arrived while the previous one was in
// flight, and each peer has at most one probe in flight.
type verifier struct {
	r         *raft.Raft
	self      raft.ServerID
	peers     *peerrpc.Client
	leaders   *leaderwatch.Watch
	timeout   time.Duration // of one round and of one probe
	slowAfter time.Duration // see rounds
	rounds    rounds

	mu     sync.Mutex
	probes map[raft.Server]*rounds
}

func newVerifier(r *raft.Raft, self string, peers *peerrpc.Client, leaders *leaderwatch.Watch, timeout, slowAfter time.Duration) *verifier {
	return &verifier{
		r:         r,
		self:      raft.ServerID(self),
		peers:     peers,
		leaders:   leaders,
		timeout:   timeout,
		slowAfter: slowAfter,
		rounds:    rounds{slowAfter: slowAfter},
		probes:    make(map[raft.Server]*rounds),
	}
}

// bound is the context of one round or probe: it ends after the timeout or
// as soon as this node's epoch ends (it lost leadership).
func (v *verifier) bound() (context.Context, context.CancelFunc) {
	return peerContext(context.Background(), v.leaders.Current(), v.timeout)
}

// verify returns nil if this node led term at some moment after the call
// began (or, with asker, after the asker's reads arrived). Callers check the
// term before and after. In a three-voter cluster a voucher from a voter is
// the quorum's second answer, and no round is needed.
func (v *verifier) verify(ctx context.Context, term uint64, asker *peerrpc.Voucher) error {
	if asker != nil {
		if asker.Term > term {
			return fmt.Errorf("%s is in term %d, this leader in %d", asker.ID, asker.Term, term)
		}
		others, known, quorum := v.voters()
		for _, srv := range others {
			if srv.ID == raft.ServerID(asker.ID) {
				known++
			}
		}
		if known >= quorum {
			return nil
		}
	}
	_, err := v.rounds.do(ctx, func() (uint64, error) {
		ctx, cancel := v.bound()
		defer cancel()
		return 0, v.confirm(ctx)
	})
	return err
}

func (v *verifier) confirm(ctx context.Context) error {
	term := v.r.CurrentTerm()
	if v.r.State() != raft.Leader {
		return errors.New("not the leader")
	}
	others, acks, quorum := v.voters()
	if acks >= quorum {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // quorum reached: the stragglers' waits end, their probes do not
	results := make(chan error, len(others))
	for _, srv := range others {
		go func() { results <- v.probe(ctx, srv, term) }()
	}
	var errs []error
	for range others {
		err := <-results
		if err == nil {
			if acks++; acks >= quorum {
				return nil
			}
			continue
		}
		errs = append(errs, err)
		if len(others)-len(errs)+acks < quorum {
			break
		}
	}
	return fmt.Errorf("no quorum for term %d: %w", term, errors.Join(errs...))
}

// voters reads raft's latest configuration: the other voters, this node's
// own answer (1 if it is a voter, else 0), and the size of a majority.
func (v *verifier) voters() (others []raft.Server, self, quorum int) {
	n := 0
	for _, srv := range v.r.GetConfiguration().Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		n++
		if srv.ID == v.self {
			self = 1
		} else {
			others = append(others, srv)
		}
	}
	return others, self, n/2 + 1
}

// probe asks one voter for its term, in a call that starts after this one.
func (v *verifier) probe(ctx context.Context, srv raft.Server, term uint64) error {
	v.mu.Lock()
	r := v.probes[srv]
	if r == nil {
		r = &rounds{slowAfter: v.slowAfter}
		v.probes[srv] = r
	}
	v.mu.Unlock()
	peerTerm, err := r.do(ctx, func() (uint64, error) {
		ctx, cancel := v.bound()
		defer cancel()
		return v.peers.Term(ctx, string(srv.Address), string(srv.ID))
	})
	if err != nil {
		return err
	}
	if peerTerm > term {
		return fmt.Errorf("%s is in term %d", srv.ID, peerTerm)
	}
	return nil
}
