package kv

import (
	"fmt"
	"time"
)

// Session is a Consul session: a lease that locks can be tied to. When it
// is invalidated (destroyed, its TTL runs out, its node fails) every key it
// holds is released or deleted (Behavior) and stays under lock-delay for
// LockDelay: acquiring it again fails until then.
type Session struct {
	ID        string
	Name      string
	Node      string
	LockDelay time.Duration
	Behavior  string // BehaviorRelease or BehaviorDelete
	// TTL as the client gave it ("15s"); empty: no TTL.
	TTL string
	// NodeChecks: "serfHealth" ties the session to its node's health; empty:
	// no checks.
	NodeChecks  []string
	CreateIndex uint64
	ModifyIndex uint64
}

// Session behaviours, limits and defaults (Consul's).
const (
	BehaviorRelease = "release"
	BehaviorDelete  = "delete"

	SerfHealth = "serfHealth"

	// DefaultSessionTTLMin is Consul's session_ttl_min: the shortest TTL
	// accepted unless the node is told otherwise; never below
	// LowestSessionTTLMin.
	DefaultSessionTTLMin = 10 * time.Second
	LowestSessionTTLMin  = time.Second
	SessionTTLMax        = 24 * time.Hour
	DefaultLockDelay     = 15 * time.Second
	MaxLockDelay         = 60 * time.Second
	// SessionTTLMultiplier: a session is invalidated once this many TTLs
	// pass without a renew (never before one TTL, the contract).
	SessionTTLMultiplier = 2
	// NodeFailAfter: a node the leader has not heard from for this long is
	// critical, and its sessions with the serfHealth check are invalidated
	// once their Lease has passed since their last renew.
	NodeFailAfter = 10 * time.Second
)

// TTLDuration parses s.TTL; 0 for no TTL.
func (s *Session) TTLDuration() time.Duration {
	if s.TTL == "" {
		return 0
	}
	d, err := time.ParseDuration(s.TTL)
	if err != nil {
		return 0
	}
	return d
}

// Validate checks what does not depend on the cluster's state, with
// Consul's wording (clients match on it); ttlMin is the node's shortest
// accepted TTL.
func (s *Session) Validate(ttlMin time.Duration) error {
	switch s.Behavior {
	case BehaviorRelease, BehaviorDelete:
	default:
		return Errorf(ErrSession, "Invalid Behavior setting '%s'", s.Behavior)
	}
	if s.TTL != "" {
		d, err := time.ParseDuration(s.TTL)
		if err != nil {
			return Errorf(ErrSession, "Session TTL '%s' invalid: %v", s.TTL, err)
		}
		if d != 0 && (d < ttlMin || d > SessionTTLMax) {
			return Errorf(ErrSession, "Invalid Session TTL '%d', must be between [%v=%v]", d, ttlMin, SessionTTLMax)
		}
	}
	if s.Node == "" {
		return Errorf(ErrSession, "Must provide Node")
	}
	for _, c := range s.NodeChecks {
		if c != SerfHealth {
			return Errorf(ErrSession, "Missing check '%s' registration", c)
		}
	}
	return nil
}

// Lease is how long after a renew (or the create) reached the leader the
// session is certain to stay valid unless it is destroyed: nothing the
// cluster does on its own (TTL, node health, its node leaving) invalidates
// it sooner. It is the TTL; for a session without one that follows its
// node's health, NodeFailAfter; 0 for a session that only a destroy ends.
// A lock holder that counts Lease from when it sent its last renew that
// succeeded knows, on its own clock, until when nobody else can take what
// it holds.
func (s *Session) Lease() time.Duration {
	if ttl := s.TTLDuration(); ttl > 0 {
		return ttl
	}
	if s.HasSerfHealth() {
		return NodeFailAfter
	}
	return 0
}

// HasSerfHealth reports whether the session follows its node's health.
func (s *Session) HasSerfHealth() bool {
	for _, c := range s.NodeChecks {
		if c == SerfHealth {
			return true
		}
	}
	return false
}

// Error is an error whose text is exactly Msg (the wording clients match
// on) and which unwraps to a sentinel, for errors.Is and the status table.
type Error struct {
	Sentinel error
	Msg      string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Sentinel }

// Errorf returns an *Error of sentinel with a formatted message.
func Errorf(sentinel error, format string, args ...any) error {
	return &Error{Sentinel: sentinel, Msg: fmt.Sprintf(format, args...)}
}

// SessionQuery reads sessions: one (ID), a node's (Node), or all. Like a
// Query it is linearizable unless Stale, and blocking with MinIndex.
type SessionQuery struct {
	ID       string
	Node     string
	Stale    bool
	MinIndex uint64
	Wait     time.Duration
}

// SessionResult answers a SessionQuery. Index rises whenever a session is
// created or destroyed; never 0.
type SessionResult struct {
	Sessions    []Session
	Index       uint64
	KnownLeader bool
	LastContact time.Duration
	Stale       bool
}
