package sessions

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// fakeClock fires timers only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// advance moves time forward by d, running due timers in order.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var next *fakeTimer
		for i, t := range c.timers {
			if !t.stopped && !t.at.After(end) {
				next = t
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				break
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		c.now = next.at
		next.stopped = true
		c.mu.Unlock()
		next.f()
	}
}

// invalidations records what the manager proposed.
type invalidations struct {
	mu   sync.Mutex
	ids  []string
	fail int // fail this many times first
	m    *Manager
}

func (v *invalidations) invalidate(id, why string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.fail > 0 {
		v.fail--
		return errors.New("no quorum")
	}
	v.ids = append(v.ids, id)
	return nil
}

func (v *invalidations) got() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Sorted(slices.Values(v.ids))
}

func newManager(t *testing.T) (*Manager, *fakeClock, *invalidations) {
	c := &fakeClock{now: time.Unix(1000, 0)}
	v := &invalidations{}
	m := New(c, v.invalidate)
	v.m = m
	t.Cleanup(m.Close)
	return m, c, v
}

// settle waits for the invalidations the manager started in goroutines.
func settle(m *Manager) {
	m.wg.Wait()
}

func session(id, node, ttl string, checks ...string) kv.Session {
	return kv.Session{ID: id, Node: node, TTL: ttl, NodeChecks: checks, Behavior: kv.BehaviorRelease}
}

func TestTTLIsNeverEarlyAndTwiceIsTheLimit(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead(nil, []string{"n1"})
	m.Created(session("a", "n1", "10s"))
	m.Created(session("forever", "n1", ""))
	c.advance(19 * time.Second)
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("invalidated before 2×TTL: %v", got)
	}
	c.advance(time.Second)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after 2×TTL: %v", got)
	}
	c.advance(time.Hour)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a session without a TTL expired: %v", got)
	}
}

func TestRenewRestartsTheTimer(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead([]kv.Session{session("a", "n1", "10s")}, []string{"n1"})
	c.advance(9 * time.Second) // a new leader gives TTL, then every renew 2×TTL
	for range 5 {
		if r := m.Renew("a"); r != Renewed {
			t.Fatalf("renew: %v", r)
		}
		c.advance(15 * time.Second)
		if r := m.Renew("a"); r != Renewed {
			t.Fatalf("renew: %v", r)
		}
	}
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("a renewed session was invalidated: %v", got)
	}
	if r := m.Renew("nope"); r != Unknown {
		t.Fatalf("renew of an unknown session: %v", r)
	}
	c.advance(20 * time.Second)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the last renew + 2×TTL: %v", got)
	}
	if r := m.Renew("a"); r == Renewed {
		t.Fatal("an invalidated session renewed")
	}
}

// A new leader restarts every timer at TTL: a session renewed just before
// the change is safe for TTL after the election (no renew can have reached
// the old leader after it), and one that stopped renewing goes after TTL.
func TestLeadershipChangeRestartsTimers(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead([]kv.Session{session("a", "n1", "10s")}, []string{"n1"})
	c.advance(9 * time.Second)
	m.Step()
	if r := m.Renew("a"); r != NotLeading {
		t.Fatalf("renew on a node that stepped down: %v", r)
	}
	c.advance(time.Minute)
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("timers ran on a follower: %v", got)
	}
	m.Lead([]kv.Session{session("a", "n1", "10s")}, []string{"n1"})
	c.advance(9 * time.Second)
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("invalidated early after a leadership change: %v", got)
	}
	c.advance(time.Second)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after TTL under the new leader: %v", got)
	}
}

func TestNodeHealth(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead([]kv.Session{
		session("checked", "n2", "", kv.SerfHealth),
		session("unchecked", "n2", ""),
		session("other", "n3", "", kv.SerfHealth),
		session("gone", "n9", "", kv.SerfHealth), // its node left while no one led
	}, []string{"n1", "n2", "n3"})
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("at leadership, before the Lease (NodeFailAfter without a TTL): %v", got)
	}
	// n3 misses heartbeats for a while, then comes back in time.
	m.NodeFailing("n3", c.Now())
	c.advance(9 * time.Second)
	m.NodeHealthy("n3")
	// n2 stops answering: critical 10s after the last contact.
	m.NodeFailing("n2", c.Now().Add(-4*time.Second))
	c.advance(5 * time.Second)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"gone"}) {
		t.Fatalf("before 10s without contact: %v", got)
	}
	c.advance(time.Second)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"checked", "gone"}) {
		t.Fatalf("after 10s without contact: %v", got)
	}
	m.NodeRemoved("n3")
	c.advance(0) // its Lease since the leader took over is long gone
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"checked", "gone", "other"}) {
		t.Fatalf("after n3 left: %v", got)
	}
}

func TestFailedInvalidationIsRetried(t *testing.T) {
	m, c, v := newManager(t)
	v.fail = 2
	m.Lead([]kv.Session{session("a", "n1", "10s")}, []string{"n1"})
	c.advance(20 * time.Second)
	settle(m)
	for range 2 {
		c.advance(retryAfter)
		settle(m)
	}
	if got := v.got(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after two failures and retries: %v", got)
	}
}

// A critical node does not cut its sessions short: each goes once its
// Lease (its TTL) has passed since its last renew, and a holder renewing
// through another node keeps its session. The bug this prevents: a 60s
// session invalidated 10s after its node went silent, while its holder
// (renewing, or counting its TTL) still believed it held its lock.
func TestNodeHealthWaitsForTheLease(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead(nil, []string{"n1", "n2"})
	m.Created(session("long", "n2", "60s", kv.SerfHealth))
	m.Created(session("renewed", "n2", "60s", kv.SerfHealth))
	m.Created(session("nochecks", "n2", "60s"))
	m.NodeFailing("n2", c.Now())
	c.advance(30 * time.Second) // n2 critical since 10s
	if r := m.Renew("renewed"); r != Renewed {
		t.Fatalf("renew of a session on a critical node: %v", r)
	}
	c.advance(30*time.Second - time.Millisecond)
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("invalidated before TTL since the last renew: %v", got)
	}
	c.advance(time.Millisecond)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"long"}) {
		t.Fatalf("TTL after the create on a critical node: %v", got)
	}
	c.advance(30 * time.Second) // renewed's TTL since its renew
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"long", "renewed"}) {
		t.Fatalf("TTL after the last renew on a critical node: %v", got)
	}
	c.advance(30*time.Second - time.Millisecond) // nochecks: 2×TTL
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"long", "renewed"}) {
		t.Fatalf("a session without checks followed its node: %v", got)
	}
}

// A node heard from again before its sessions' Lease ran out keeps them.
func TestNodeBackInTime(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead(nil, []string{"n1", "n2"})
	m.Created(session("a", "n2", "30s", kv.SerfHealth))
	m.NodeFailing("n2", c.Now())
	c.advance(20 * time.Second)
	m.NodeHealthy("n2")
	c.advance(25 * time.Second) // past the Lease, before 2×TTL
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("invalidated although its node came back: %v", got)
	}
}

// A node that left the configuration, or that left while no one led: its
// sessions still get their Lease since their last renew (or since the
// leader took over).
func TestRemovedNodeWaitsForTheLease(t *testing.T) {
	m, c, v := newManager(t)
	m.Lead([]kv.Session{session("orphan", "n9", "20s", kv.SerfHealth)}, []string{"n1", "n2"})
	m.Created(session("a", "n2", "20s", kv.SerfHealth))
	c.advance(15 * time.Second)
	m.Renew("a")
	m.NodeRemoved("n2")
	c.advance(5*time.Second - time.Millisecond)
	settle(m)
	if got := v.got(); len(got) != 0 {
		t.Fatalf("invalidated before its Lease: %v", got)
	}
	c.advance(time.Millisecond)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"orphan"}) {
		t.Fatalf("Lease after the leader took over: %v", got)
	}
	c.advance(15 * time.Second)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"a", "orphan"}) {
		t.Fatalf("Lease after the last renew: %v", got)
	}
}

// Once its invalidation has started (and while a failed one waits to be
// tried again), a session cannot be renewed: the destroy would follow a
// renew that promised it a lease.
func TestNoRenewOnceTheInvalidationStarted(t *testing.T) {
	m, c, v := newManager(t)
	v.fail = 1
	m.Lead([]kv.Session{session("a", "n1", "10s")}, []string{"n1"})
	c.advance(10 * time.Second) // TTL since the leader took over: fires, fails
	settle(m)
	if r := m.Renew("a"); r != Doomed {
		t.Fatalf("renew while the invalidation waits to be retried: %v", r)
	}
	c.advance(retryAfter)
	settle(m)
	if got := v.got(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("the retried invalidation: %v", got)
	}
}
