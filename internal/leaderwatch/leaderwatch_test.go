package leaderwatch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type fakeRaft struct {
	mu    sync.Mutex
	addr  raft.ServerAddress
	id    raft.ServerID
	term  uint64
	state raft.RaftState
}

func (f *fakeRaft) LeaderWithID() (raft.ServerAddress, raft.ServerID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addr, f.id
}

func (f *fakeRaft) CurrentTerm() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term
}

func (f *fakeRaft) State() raft.RaftState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeRaft) set(id string, term uint64, state raft.RaftState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.id, f.term, f.state = raft.ServerID(id), term, state
	f.addr = ""
	if id != "" {
		f.addr = raft.ServerAddress(id + ":7000")
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newWatch(t *testing.T) (*Watch, *fakeRaft, *clock, *[]float64) {
	t.Helper()
	r := &fakeRaft{}
	r.set("n1", 1, raft.Follower)
	c := &clock{t: time.Unix(1000, 0)}
	var seen []float64
	w := New(r, "self", "self:7000", c.now, func(s float64) { seen = append(seen, s) })
	return w, r, c, &seen
}

// ended waits for a bound context to end (AfterFunc cancels it from its
// own goroutine), giving up after a deadline.
func ended(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// open reports whether epoch e has not ended (its own context is cancelled
// synchronously by Refresh).
func open(e Epoch) bool {
	select {
	case <-e.Done():
		return false
	default:
		return true
	}
}

func TestEpochEndsWhenTheLeaderIsLostOrReplaced(t *testing.T) {
	w, r, _, seen := newWatch(t)
	ep := w.Current()
	if ep.Leader != "n1:7000" || ep.LeaderID != "n1" || ep.Term != 1 {
		t.Fatalf("epoch %+v", ep)
	}
	if _, known := w.Leader(); !known {
		t.Fatal("leader not known")
	}
	ctx, cancel := Bind(context.Background(), ep)
	defer cancel()
	w.Heard("n1", 1)

	r.set("", 1, raft.Candidate) // raft's heartbeat timeout ran out
	w.Refresh()
	if !ended(ctx) || !errors.Is(context.Cause(ctx), ErrLeaderChanged) {
		t.Fatalf("bound context not ended when the leader went quiet: cause %v", context.Cause(ctx))
	}
	if _, known := w.Leader(); known {
		t.Fatal("a leader this node no longer hears is offered for new calls")
	}
	r.set("n1", 1, raft.Follower) // the same leader is back: a new epoch, no failover
	w.Refresh()
	back, known := w.Leader()
	if !known || back.LeaderID != "n1" || !open(back) {
		t.Fatalf("epoch after the leader came back: %+v, known %v", back, known)
	}
	w.ReadServed()
	if len(*seen) != 0 {
		t.Fatalf("the same leader coming back counted as a failover: %v", *seen)
	}

	ctx2, cancel2 := Bind(context.Background(), back)
	defer cancel2()
	r.set("n2", 2, raft.Follower)
	w.Refresh()
	if !ended(ctx2) {
		t.Fatal("bound context not ended by the new leader")
	}
	if got := w.Current(); got.LeaderID != "n2" || got.Term != 2 {
		t.Fatalf("new epoch %+v", got)
	}
}

func TestEpochEndsOnNewerTermWithoutLeader(t *testing.T) {
	w, r, _, _ := newWatch(t)
	ctx, cancel := Bind(context.Background(), w.Current())
	defer cancel()
	r.set("", 2, raft.Candidate)
	w.Refresh()
	if !ended(ctx) {
		t.Fatal("a newer term did not end the epoch")
	}
	if ep := w.Current(); ep.Leader != "" || ep.Term != 2 {
		t.Fatalf("epoch %+v", ep)
	}
}

func TestHeartbeatOfNewerTermRefreshes(t *testing.T) {
	w, r, _, _ := newWatch(t)
	ep := w.Current()
	ctx, cancel := Bind(context.Background(), ep)
	defer cancel()
	r.set("n3", 3, raft.Follower)
	w.Heard("n1", 1) // an old leader's heartbeat changes nothing by itself
	if !open(ep) {
		t.Fatal("a heartbeat of the current term ended the epoch")
	}
	w.Heard("n3", 3)
	if !ended(ctx) || w.Current().LeaderID != "n3" {
		t.Fatal("a heartbeat of a newer term did not refresh the watch")
	}
}

func TestLeaderlessAndCutOff(t *testing.T) {
	w, r, c, _ := newWatch(t)
	if since, _ := w.Leaderless(); !since.IsZero() {
		t.Fatal("leaderless with a leader known")
	}
	r.set("self", 1, raft.Leader)
	w.Refresh()
	self := w.Current()
	if self.LeaderID != "self" || self.Leader != "self:7000" {
		t.Fatalf("epoch %+v", self)
	}
	ctx, cancel := Bind(context.Background(), self)
	defer cancel()

	c.advance(time.Second)
	r.set("", 1, raft.Follower) // the lease ran out; nobody else heard of
	changed := w.Changed()
	w.Refresh()
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed")
	}
	if !ended(ctx) {
		t.Fatal("losing leadership did not end the epoch")
	}
	since, cutOff := w.Leaderless()
	if !since.Equal(c.t) || !cutOff {
		t.Fatalf("leaderless since %v (want %v), cut off %v", since, c.t, cutOff)
	}

	r.set("n2", 2, raft.Follower)
	w.Refresh()
	if since, cutOff := w.Leaderless(); !since.IsZero() || cutOff {
		t.Fatal("a known leader did not clear the leaderless state")
	}
}

func TestFailoverMeasuredFromLastHeartbeat(t *testing.T) {
	w, r, c, seen := newWatch(t)
	w.Heard("n1", 1)
	last := c.t
	c.advance(1500 * time.Millisecond)
	r.set("", 1, raft.Candidate)
	w.Refresh()
	c.advance(300 * time.Millisecond)
	r.set("n2", 2, raft.Follower)
	w.Refresh()
	c.advance(200 * time.Millisecond)
	w.ReadServed()
	w.ReadServed() // only the first read after the change counts
	if len(*seen) != 1 || (*seen)[0] != c.t.Sub(last).Seconds() {
		t.Fatalf("observed %v, want one failover of %v", *seen, c.t.Sub(last))
	}
}

type fakeObservable struct{}

func (fakeObservable) RegisterObserver(*raft.Observer)   {}
func (fakeObservable) DeregisterObserver(*raft.Observer) {}

// A change raft reports no observation for (or one the observer dropped) is
// picked up by the periodic refresh.
func TestRunRefreshesWithoutObservations(t *testing.T) {
	r := &fakeRaft{}
	r.set("n1", 1, raft.Follower)
	w := New(r, "self", "self:7000", time.Now, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { Run(fakeObservable{}, w, time.Millisecond, stop); close(done) }()
	defer func() { close(stop); <-done }()
	r.set("n2", 2, raft.Follower)
	deadline := time.After(5 * time.Second)
	for {
		if ep, known := w.Leader(); known && ep.LeaderID == "n2" {
			return
		}
		select {
		case <-w.Changed():
		case <-deadline:
			t.Fatal("the watch never saw the new leader")
		}
	}
}

// A leader that steps down because another node campaigns in a newer term
// (a leadership transfer) is not cut off: a successor is on its way.
func TestSteppingDownToNewerTermIsNotCutOff(t *testing.T) {
	w, r, _, _ := newWatch(t)
	r.set("self", 1, raft.Leader)
	w.Refresh()
	r.set("", 2, raft.Follower)
	w.Refresh()
	if _, cutOff := w.Leaderless(); cutOff {
		t.Fatal("stepping down to a newer term counted as cut off")
	}
	r.set("self", 3, raft.Leader)
	w.Refresh()
	r.set("", 3, raft.Follower) // lease lost, same term
	w.Refresh()
	if _, cutOff := w.Leaderless(); !cutOff {
		t.Fatal("losing the lease did not count as cut off")
	}
	r.set("", 4, raft.Candidate) // a newer term seen: someone may win
	w.Refresh()
	if _, cutOff := w.Leaderless(); cutOff {
		t.Fatal("still cut off after a newer term appeared")
	}
}

// Each failover is measured from the last heartbeat of the leader it
// replaced, even when no read was served between two failovers.
func TestEachFailoverMeasuredAfresh(t *testing.T) {
	w, r, c, seen := newWatch(t)
	w.Heard("n1", 1)
	c.advance(time.Second)
	r.set("n2", 2, raft.Follower)
	w.Refresh() // no read served under n2
	c.advance(10 * time.Second)
	w.Heard("n2", 2)
	last := c.t
	c.advance(time.Second)
	r.set("n3", 3, raft.Follower)
	w.Refresh()
	w.ReadServed()
	if len(*seen) != 1 || (*seen)[0] != c.t.Sub(last).Seconds() {
		t.Fatalf("observed %v, want one failover of %v", *seen, c.t.Sub(last))
	}
}

// Raft steps down to a newer term by setting its state before its term, and
// the observation of the state comes in between: the refresh it causes sees
// a same-term step-down. Once the term has moved, the node is not cut off,
// with no further refresh needed (none may come until the new leader's first
// heartbeat).
func TestStepDownSeenBeforeItsTerm(t *testing.T) {
	w, r, _, _ := newWatch(t)
	r.set("self", 3, raft.Leader)
	w.Refresh()
	r.set("", 3, raft.Follower) // setState(Follower) observed...
	w.Refresh()
	r.set("", 4, raft.Follower) // ...then setCurrentTerm(4), unobserved
	if _, cutOff := w.Leaderless(); cutOff {
		t.Fatal("a step-down to a newer term counted as cut off")
	}
	if _, _, _, cutOff := w.State(); cutOff {
		t.Fatal("State: a step-down to a newer term counted as cut off")
	}
}
