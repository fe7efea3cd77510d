// Package sessions is a raft group's Consul sessions. Their state lives in
// the group's state machine; this package attaches to the group through
// its hooks (Service, service.go): it stamps a create on the leader (its
// ID, a check that its node is a member), answers renewals and queries,
// and runs the leader's side (Manager): TTL timers and node health. The
// Manager decides *when* a session must be invalidated; the invalidation
// itself is a log entry (a session destroy) that the leader proposes, so
// every node applies it at the same point of the log.
//
// The rules (Consul's, kept stricter where Consul is loose):
//
//   - Timers live on the leader only. Renewals touch only the timers: they
//     write nothing to the log.
//   - Nothing but a destroy invalidates a session before its Lease
//     (kv.Session.Lease: its TTL) has passed since the leader last saw it
//     renewed or created. That is what a lock holder counts on: it measures
//     the same Lease from when it sent its last renew that succeeded, on its
//     own clock, and stops before the cluster can take the lock away.
//   - A session with a TTL is invalidated once kv.SessionTTLMultiplier × TTL
//     passes without a renew.
//   - A session with the serfHealth check follows its node's health: once
//     the leader has not heard from the node for kv.NodeFailAfter, or the
//     node left the raft configuration, the node is critical, and each of
//     its sessions is invalidated once its Lease has passed since its last
//     renew (through any node). A holder that keeps renewing through
//     another node keeps its session; one that cannot renew loses it after
//     Lease rather than 2×TTL.
//   - When a node becomes leader, every session counts as renewed at that
//     moment (its TTL timer restarts at TTL, not 2×TTL): it cannot know when
//     the previous leader last saw a renew, but no renew can have reached
//     that leader after this one was elected, so no holder is cut short.
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
	failing  map[string]Timer  // node → timer until it turns critical
	critical map[string]string // node → why it is critical, until heard again
	firing   map[string]uint64 // session → epoch of the invalidation under way
	wg       sync.WaitGroup
}

type tracked struct {
	s       kv.Session
	renewed time.Time // when this leader last saw it renewed, created, or took over
	ttl     Timer     // TTL timer; nil without a TTL
	quiet   Timer     // while its node is critical: Lease after renewed
}

// New returns a manager that proposes invalidations with invalidate.
func New(clock Clock, invalidate Invalidator) *Manager {
	return &Manager{clock: clock, invalidate: invalidate, sessions: map[string]*tracked{},
		failing: map[string]Timer{}, critical: map[string]string{}, firing: map[string]uint64{}}
}

// Close stops every timer and waits for invalidations in flight.
func (m *Manager) Close() {
	m.Step()
	m.wg.Wait()
}

// Lead starts the timers of every session, at TTL, and takes the nodes
// outside members as critical (they left while no one led). Call it once
// this node leads and has applied everything committed before its term.
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
			m.critical[s.Node] = "its node " + s.Node + " is no longer a member"
		}
	}
	for _, t := range m.sessions {
		m.armQuietLocked(t)
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
		t.stop()
	}
	for _, t := range m.failing {
		t.Stop()
	}
	m.sessions = map[string]*tracked{}
	m.failing = map[string]Timer{}
	m.critical = map[string]string{}
}

func (t *tracked) stop() {
	for _, timer := range []Timer{t.ttl, t.quiet} {
		if timer != nil {
			timer.Stop()
		}
	}
	t.ttl, t.quiet = nil, nil
}

// Created tracks a session just created (on the leader).
func (m *Manager) Created(s kv.Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leading {
		m.armQuietLocked(m.trackLocked(s, kv.SessionTTLMultiplier))
	}
}

// Destroyed forgets a session that was invalidated.
func (m *Manager) Destroyed(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.sessions[id]; t != nil {
		t.stop()
		delete(m.sessions, id)
	}
}

// Renewal is what Renew did.
type Renewal int

const (
	Renewed    Renewal = iota
	NotLeading         // the caller forwards or retries
	Unknown            // not tracked: it does not exist, or is not loaded yet
	Doomed             // its invalidation is under way: it is gone
)

// Renew restarts a session's timers. A session whose invalidation has
// started cannot be renewed: a renew accepted then would be followed by
// the invalidation, sooner than the lease the renew promised.
func (m *Manager) Renew(id string) Renewal {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading {
		return NotLeading
	}
	if epoch, ok := m.firing[id]; ok && epoch == m.epoch {
		return Doomed
	}
	t := m.sessions[id]
	if t == nil {
		return Unknown
	}
	t.renewed = m.clock.Now()
	m.armTTLLocked(t, kv.SessionTTLMultiplier)
	m.armQuietLocked(t)
	return Renewed
}

// Leading reports whether the timers run here.
func (m *Manager) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

func (m *Manager) trackLocked(s kv.Session, mult time.Duration) *tracked {
	if old := m.sessions[s.ID]; old != nil {
		old.stop()
	}
	t := &tracked{s: s, renewed: m.clock.Now()}
	m.sessions[s.ID] = t
	m.armTTLLocked(t, mult)
	return t
}

// armTTLLocked (re)starts t's TTL timer at mult × TTL.
func (m *Manager) armTTLLocked(t *tracked, mult time.Duration) {
	if t.ttl != nil {
		t.ttl.Stop()
		t.ttl = nil
	}
	ttl := t.s.TTLDuration()
	if ttl <= 0 {
		return
	}
	t.ttl = m.afterLocked(t, mult*ttl, "its TTL ran out")
}

// armQuietLocked (re)starts t's invalidation for a critical node: Lease
// after its last renew. It does nothing while the node is healthy.
func (m *Manager) armQuietLocked(t *tracked) {
	if t.quiet != nil {
		t.quiet.Stop()
		t.quiet = nil
	}
	why, critical := m.critical[t.s.Node]
	if !critical || !t.s.HasSerfHealth() {
		return
	}
	lease := t.s.Lease()
	wait := max(lease-m.clock.Now().Sub(t.renewed), 0)
	t.quiet = m.afterLocked(t, wait, why+", and the session was not renewed for "+lease.String())
}

// afterLocked runs fireLocked for t after d, unless t was replaced,
// destroyed or stopped meanwhile, or leadership changed.
func (m *Manager) afterLocked(t *tracked, d time.Duration, why string) Timer {
	id, epoch := t.s.ID, m.epoch
	var timer Timer
	timer = m.clock.AfterFunc(d, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.epoch != epoch || m.sessions[id] != t || (t.ttl != timer && t.quiet != timer) {
			return
		}
		m.fireLocked(id, why)
	})
	return timer
}

// fireLocked proposes the invalidation of id in its own goroutine, trying
// again while this node leads and the session is still tracked. From now
// on, within this epoch, the session cannot be renewed (Doomed).
func (m *Manager) fireLocked(id, why string) {
	if epoch, ok := m.firing[id]; ok && epoch == m.epoch {
		return
	}
	m.firing[id] = m.epoch
	m.invalidateLocked(id, why, m.epoch)
}

func (m *Manager) invalidateLocked(id, why string, epoch uint64) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.invalidate(id, why)
		m.mu.Lock()
		defer m.mu.Unlock()
		if err == nil {
			if t := m.sessions[id]; t != nil && m.epoch == epoch {
				t.stop()
				delete(m.sessions, id)
			}
		}
		if err == nil || m.epoch != epoch || m.sessions[id] == nil {
			m.doneFiringLocked(id, epoch)
			return
		}
		m.clock.AfterFunc(retryAfter, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.epoch == epoch && m.sessions[id] != nil {
				m.invalidateLocked(id, why, epoch)
			} else {
				m.doneFiringLocked(id, epoch)
			}
		})
	}()
}

func (m *Manager) doneFiringLocked(id string, epoch uint64) {
	if m.firing[id] == epoch {
		delete(m.firing, id)
	}
}

// NodeFailing records that the leader has not heard from node since last:
// unless NodeHealthy comes first, the node turns critical once
// kv.NodeFailAfter has passed since last.
func (m *Manager) NodeFailing(node string, last time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, critical := m.critical[node]; !m.leading || m.failing[node] != nil || critical {
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

// NodeHealthy cancels a node's pending failure, and the invalidations
// waiting on it if it was critical.
func (m *Manager) NodeHealthy(node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.failing[node]; t != nil {
		t.Stop()
		delete(m.failing, node)
	}
	if _, critical := m.critical[node]; !critical {
		return
	}
	delete(m.critical, node)
	for _, t := range m.sessions {
		if t.s.Node == node {
			m.armQuietLocked(t) // stops it: the node is no longer critical
		}
	}
}

// NodeRemoved makes a node that left the configuration critical at once.
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
	m.critical[node] = why
	for _, t := range m.sessions {
		if t.s.Node == node {
			m.armQuietLocked(t)
		}
	}
}
