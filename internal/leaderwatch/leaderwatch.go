// Package leaderwatch follows who leads the cluster, as one node sees it,
// so that the node's requests follow the leader instead of timers.
//
// Its unit is the epoch: one leader in one term. An epoch ends as soon as
// the node learns something that makes it stale: a different leader, a
// newer term, raft giving up on hearing the leader (its heartbeat timeout),
// or, on the leader itself, the loss of leadership. Calls bound to an epoch
// (Bind) are cancelled then, so a request in flight to a leader that was
// cut off is abandoned when the node notices, not when a timeout runs out.
//
// It also says how long the node has been without a leader and whether it
// stepped down from leadership with no successor in sight (Leaderless), so
// that a node cut off from the majority answers at once instead of waiting,
// and it measures failovers: from the last heartbeat of the previous leader
// to the first linearizable read served under the next one.
package leaderwatch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ErrLeaderChanged is the cause of an epoch's end.
var ErrLeaderChanged = errors.New("the leader changed")

// Raft is what the watch reads of the local raft node.
type Raft interface {
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	CurrentTerm() uint64
	State() raft.RaftState
}

// Epoch is one leader in one term, as this node saw it. Leader is empty in
// an epoch started by a newer term whose leader is not known yet.
type Epoch struct {
	Leader   string // address
	LeaderID string
	Term     uint64
	ctx      context.Context
}

// Done is closed when the epoch ends.
func (e Epoch) Done() <-chan struct{} { return e.ctx.Done() }

// Watch follows the leader. Feed it with Refresh (on raft observations) and
// Heard (on heartbeats); every method is safe for concurrent use.
type Watch struct {
	r        Raft
	self     raft.ServerID
	selfAddr string
	now      func() time.Time
	// observe receives failover durations in seconds (may be nil).
	observe func(float64)

	mu          sync.Mutex
	cur         Epoch
	cancel      context.CancelCauseFunc
	prevLeader  raft.ServerID // the last leader known, across leaderless gaps
	leaderless  time.Time     // since when no leader is known; zero if one is
	deposed     bool          // this node led, lost it, and knows no successor
	deposedTerm uint64        // the term it led
	heard       map[raft.ServerID]time.Time
	failover    time.Time   // last contact with the previous leader; zero: none pending
	pending     atomic.Bool // failover is set: read on every linearizable read
	changed     chan struct{}
}

// New returns a watch of r for the node with ID self at address selfAddr.
// now is the clock (time.Now outside tests); observe, if set, receives each
// failover's duration.
func New(r Raft, self, selfAddr string, now func() time.Time, observe func(seconds float64)) *Watch {
	w := &Watch{r: r, self: raft.ServerID(self), selfAddr: selfAddr, now: now, observe: observe,
		heard: map[raft.ServerID]time.Time{}, changed: make(chan struct{})}
	w.cur.ctx, w.cancel = context.WithCancelCause(context.Background())
	w.leaderless = now()
	w.Refresh()
	return w
}

// Observable is where Run gets raft's observations (a *raft.Raft).
type Observable interface {
	RegisterObserver(*raft.Observer)
	DeregisterObserver(*raft.Observer)
}

// Run refreshes the watch on every raft observation, and every interval
// as a backstop, until stop closes. The observer drops observations when
// its channel is full; that is harmless because each refresh reads raft's
// current state, and a full channel means another refresh is already due.
func Run(r Observable, w *Watch, interval time.Duration, stop <-chan struct{}) {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.RequestVoteRequest:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	w.Refresh() // what changed before the observer was registered
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			w.Refresh()
		case <-tick.C:
			w.Refresh()
		case <-stop:
			return
		}
	}
}

// Refresh reads raft's state and starts a new epoch if it changed. The
// state is read under the watch's lock, so that of two refreshes racing
// (an observation and a heartbeat) the one applied last read last.
func (w *Watch) Refresh() {
	w.mu.Lock()
	defer w.mu.Unlock()
	addr, id := w.r.LeaderWithID()
	term := w.r.CurrentTerm()
	leading := w.r.State() == raft.Leader
	if leading {
		addr, id = raft.ServerAddress(w.selfAddr), w.self // raft may not have recorded itself yet
	}
	now := w.now()
	cur := w.cur
	switch {
	case id != "" && id != raft.ServerID(cur.LeaderID),
		term > cur.Term,
		id == "" && cur.LeaderID != "", // raft stopped hearing the leader
		raft.ServerID(cur.LeaderID) == w.self && !leading:
		w.begin(string(addr), id, term, now)
	case id != "" && string(addr) != cur.Leader:
		w.begin(string(addr), id, term, now) // same server, new address
	}
	switch {
	case id != "":
		if !w.leaderless.IsZero() {
			w.leaderless = time.Time{}
			w.deposed = false
			w.signal()
		}
	case w.leaderless.IsZero():
		w.leaderless = now
		w.signal()
	}
	if w.deposed && term > w.deposedTerm {
		w.deposed = false // someone campaigns in a newer term: a majority may be near
		w.signal()
	}
}

// begin ends the current epoch and starts one led by id (which may be
// empty); w.mu is held.
func (w *Watch) begin(addr string, id raft.ServerID, term uint64, now time.Time) {
	old := w.cur
	w.cancel(ErrLeaderChanged)
	w.cur = Epoch{Leader: addr, LeaderID: string(id), Term: max(term, old.Term)}
	w.cur.ctx, w.cancel = context.WithCancelCause(context.Background())
	if raft.ServerID(old.LeaderID) == w.self && id != w.self {
		// Stepping down in the same term means the lease ran out: no
		// majority answered. In a newer term (a transfer, or another
		// candidate) a successor is on its way.
		w.deposed = id == "" && term <= old.Term
		w.deposedTerm = old.Term
		w.heard[w.self] = now // a leader's last contact with itself: when it stopped leading
	}
	if old.LeaderID != "" {
		w.prevLeader = raft.ServerID(old.LeaderID)
	}
	if id != "" && w.prevLeader != "" && id != w.prevLeader {
		// Measured afresh at every change, from the last heartbeat of the
		// leader just replaced.
		w.failover = time.Time{}
		w.pending.Store(false)
		if last, ok := w.heard[w.prevLeader]; ok {
			w.failover = last
			w.pending.Store(true)
		}
		for k := range w.heard { // only the leaders that matter for the next change
			if k != w.prevLeader && k != id && k != w.self {
				delete(w.heard, k)
			}
		}
	}
	w.signal()
}

func (w *Watch) signal() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// Heard records a heartbeat from a node claiming to lead term: the last
// contact a failover is measured from. A newer term refreshes the watch.
func (w *Watch) Heard(id string, term uint64) {
	w.mu.Lock()
	w.heard[raft.ServerID(id)] = w.now()
	newer := term > w.cur.Term
	w.mu.Unlock()
	if newer {
		w.Refresh()
	}
}

// Current returns the current epoch.
func (w *Watch) Current() Epoch {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Leader returns the current epoch and whether it has a leader to call.
func (w *Watch) Leader() (Epoch, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.cur.Leader != "" && w.leaderless.IsZero()
}

// Changed is closed at the next change of epoch or of leaderless state.
func (w *Watch) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// State is Leader and Leaderless read at once.
func (w *Watch) State() (ep Epoch, known bool, leaderlessSince time.Time, cutOff bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.cur.Leader != "" && w.leaderless.IsZero(), w.leaderless, w.stillDeposed()
}

// stillDeposed says whether the deposition still stands; w.mu is held.
// Raft steps down to a newer term in two steps, the state first (which is
// what the observation reports) and the term after, so a refresh between
// them sees a same-term step-down: a lost lease, where there was in fact a
// successor campaigning (a leadership transfer). Raft's term, read again
// whenever the deposition is asked for, tells the two apart.
func (w *Watch) stillDeposed() bool {
	if w.deposed && w.r.CurrentTerm() > w.deposedTerm {
		w.deposed = false
	}
	return w.deposed
}

// Leaderless says since when no leader has been known (zero if one is), and
// whether this node stepped down from leadership and has heard of no
// successor since: then it cannot reach a majority, and waiting is useless.
func (w *Watch) Leaderless() (since time.Time, deposed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leaderless, w.stillDeposed()
}

// Bind returns a context that also ends, with cause ErrLeaderChanged, when
// epoch e ends.
func Bind(ctx context.Context, e Epoch) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(e.ctx, func() { cancel(ErrLeaderChanged) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// ReadServed records that a linearizable read was served: the first one
// after a change of leader ends the failover measurement.
func (w *Watch) ReadServed() {
	if !w.pending.Load() {
		return
	}
	w.mu.Lock()
	w.pending.Store(false)
	from := w.failover
	w.failover = time.Time{}
	now := w.now()
	w.mu.Unlock()
	if !from.IsZero() && w.observe != nil {
		w.observe(now.Sub(from).Seconds())
	}
}

// Stop ends the current epoch (the node is closing).
func (w *Watch) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel(ErrLeaderChanged)
}
