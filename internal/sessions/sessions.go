// Package sessions runs the leader's side of Consul sessions: TTL timers and
// node health. It decides *when* a session must be invalidated; the
// invalidation itself is a raft command (a session destroy) that the caller
// proposes, so every node applies it at the same point of the log.
//
// The rules (Consul's, kept stricter where Consul is loose):
//
//   - Timers live on the leader only. A session is never invalidated before
//     its TTL has passed since its creation or its last renew; it is
//     invalidated once kv.SessionTTLMultiplier × TTL passes without one.
//     Renewals touch only the timer: they write nothing to the log.
//   - When a node becomes leader, every timer restarts at TTL (not 2×TTL): it
//     cannot know when the previous leader last saw a renew, but no renew
//     can have happened after its own election, so the session still gets
//     its full TTL, and a session that stopped renewing before a leader
//     change goes within 2×TTL plus the election in the usual case.
//   - A session with the serfHealth check follows its node's health: it is
//     invalidated when the leader has not heard from the node for
//     kv.NodeFailAfter, or when the node leaves the raft configuration.
//
// Everything runs on a Clock, so tests drive the timers with a fake one.
package sessions

import (
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Clock is the time source of the timers.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a running timer; Stop cancels it.
type Timer interface{ Stop() bool }

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                            { return time.Now() }
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Invalidator proposes the destroy of a session through raft. An error
// means it may not have happened; the manager tries again while it leads.
type Invalidator func(id, why string) error

// retryAfter is how long a failed invalidation waits before the next try.
const retryAfter = time.Second

// Manager keeps the timers of one node. It does nothing until Lead.
type Manager struct {
	clock      Clock
	invalidate Invalidator

	mu       sync.Mutex
	leading  bool
	epoch    uint64 // bumped by Lead and Step: timers of an old epoch do nothing
	sessions map[string]*tracked
	failing  map[string]Timer // node → timer of its failure
	firing   map[string]bool  // sessions whose invalidation is in flight
	wg       sync.WaitGroup
}

type tracked struct {
	s     kv.Session
	timer Timer // TTL timer; nil without a TTL
}

// New returns a manager that proposes invalidations with invalidate.
func New(clock Clock, invalidate Invalidator) *Manager {
	return &Manager{clock: clock, invalidate: invalidate,
		sessions: map[string]*tracked{}, failing: map[string]Timer{}, firing: map[string]bool{}}
}

// Close stops every timer and waits for invalidations in flight.
func (m *Manager) Close() {
	m.Step()
	m.wg.Wait()
}

// Lead starts the timers of every session, at TTL, and invalidates
// at once the node-checked sessions of nodes outside members (they left
// while no one led). Call it once this node leads and has applied
// everything committed before its term.
func (m *Manager) Lead(all []kv.Session, members []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopLocked()
	m.leading = true
	m.epoch++
	in := map[string]bool{}
	for _, id := range members {
		in[id] = true
	}
	for _, s := range all {
		m.trackLocked(s, 1)
		if s.HasSerfHealth() && !in[s.Node] {
			m.fireLocked(s.ID, "its node "+s.Node+" is no longer a member")
		}
	}
}

// Step stops every timer: this node no longer leads.
func (m *Manager) Step() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopLocked()
	m.leading = false
	m.epoch++
}

func (m *Manager) stopLocked() {
	for _, t := range m.sessions {
		if t.timer != nil {
			t.timer.Stop()
		}
	}
	for _, t := range m.failing {
		t.Stop()
	}
	m.sessions = map[string]*tracked{}
	m.failing = map[string]Timer{}
}

// Created tracks a session just created (on the leader).
func (m *Manager) Created(s kv.Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leading {
		m.trackLocked(s, kv.SessionTTLMultiplier)
	}
}

// Destroyed forgets a session that was invalidated.
func (m *Manager) Destroyed(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.sessions[id]; t != nil {
		if t.timer != nil {
			t.timer.Stop()
		}
		delete(m.sessions, id)
	}
}

// Renew restarts a session's TTL timer. It reports false when this node
// does not lead (the caller forwards or retries) or does not know the
// session (it does not exist, or the leader has not loaded it yet).
func (m *Manager) Renew(id string) (leading, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading {
		return false, false
	}
	t := m.sessions[id]
	if t == nil {
		return true, false
	}
	m.armLocked(t, kv.SessionTTLMultiplier)
	return true, true
}

// Leading reports whether the timers run here.
func (m *Manager) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

func (m *Manager) trackLocked(s kv.Session, mult time.Duration) {
	if old := m.sessions[s.ID]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	t := &tracked{s: s}
	m.sessions[s.ID] = t
	m.armLocked(t, mult)
}

// armLocked (re)starts t's TTL timer at mult × TTL.
func (m *Manager) armLocked(t *tracked, mult time.Duration) {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	ttl := t.s.TTLDuration()
	if ttl <= 0 {
		return
	}
	id, epoch := t.s.ID, m.epoch
	t.timer = m.clock.AfterFunc(mult*ttl, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.epoch != epoch || m.sessions[id] != t {
			return // stopped, renewed or destroyed meanwhile
		}
		m.fireLocked(id, "its TTL ran out")
	})
}

// fireLocked proposes the invalidation of id in its own goroutine, trying
// again while this node leads and the session is still tracked.
func (m *Manager) fireLocked(id, why string) {
	if m.firing[id] {
		return
	}
	m.firing[id] = true
	epoch := m.epoch
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.invalidate(id, why)
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.firing, id)
		if err == nil {
			if t := m.sessions[id]; t != nil {
				if t.timer != nil {
					t.timer.Stop()
				}
				delete(m.sessions, id)
			}
			return
		}
		if m.epoch != epoch || m.sessions[id] == nil {
			return
		}
		m.clock.AfterFunc(retryAfter, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.epoch == epoch && m.sessions[id] != nil {
				m.fireLocked(id, why)
			}
		})
	}()
}

// NodeFailing records that the leader has not heard from node since last:
// unless NodeHealthy comes first, its node-checked sessions are invalidated
// once kv.NodeFailAfter has passed since last.
func (m *Manager) NodeFailing(node string, last time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading || m.failing[node] != nil {
		return
	}
	epoch := m.epoch
	wait := max(kv.NodeFailAfter-m.clock.Now().Sub(last), 0)
	var timer Timer
	timer = m.clock.AfterFunc(wait, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.epoch != epoch || m.failing[node] != timer {
			return
		}
		delete(m.failing, node)
		m.nodeCriticalLocked(node, "its node "+node+" has not been heard from for "+kv.NodeFailAfter.String())
	})
	m.failing[node] = timer
}

// NodeHealthy cancels a node's pending failure.
func (m *Manager) NodeHealthy(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.failing[node]; t != nil {
		t.Stop()
		delete(m.failing, node)
	}
}

// NodeRemoved invalidates at once the node-checked sessions of a node that
// left the configuration.
func (m *Manager) NodeRemoved(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading {
		return
	}
	if t := m.failing[node]; t != nil {
		t.Stop()
		delete(m.failing, node)
	}
	m.nodeCriticalLocked(node, "its node "+node+" left the cluster")
}

func (m *Manager) nodeCriticalLocked(node, why string) {
	for id, t := range m.sessions {
		if t.s.Node == node && t.s.HasSerfHealth() {
			m.fireLocked(id, why)
		}
	}
}
