// Package wire is the vocabulary the HTTP API (httpd) and the Go client
// share, so that the two directions cannot drift apart: which HTTP status
// each sentinel error travels as and which error a status comes back as,
// raftkv's headers, and Consul's JSON shape of a session. (The shapes of
// keys, transactions and ACL records are public, in package api.)
package wire

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Headers raftkv adds to Consul's protocol.
const (
	// HeaderError carries the wire code (kv.Code) of an error answer, so
	// that a client tells errors apart that share Consul's status (a 500
	// is "No cluster leader", an unknown outcome or a session refusal).
	HeaderError = "X-Raftkv-Error"
	// HeaderOutcome says, on an error answer to a write, whether the write
	// was certainly not applied ("not-applied") or may have been
	// ("unknown").
	HeaderOutcome = "X-Raftkv-Outcome"
	// HeaderFailFast, on a request, asks a node that has no leader to
	// answer as soon as it cannot expect one soon instead of holding the
	// request as Consul does: the caller would rather try another node.
	HeaderFailFast = "X-Raftkv-Fail-Fast"
)

// Outcomes of a write that failed (HeaderOutcome).
const (
	OutcomeNotApplied = "not-applied"
	OutcomeUnknown    = "unknown"
)

// statuses maps sentinel errors to HTTP statuses, in order: the first
// match wins, and for each status the first sentinel listed is the one a
// client gets back when the answer carries no HeaderError.
var statuses = []struct {
	err    error
	status int
}{
	{kv.ErrInvalid, http.StatusBadRequest},
	{kv.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{kv.ErrNotFound, http.StatusNotFound},
	{kv.ErrUnknownPeer, http.StatusNotFound},
	{kv.ErrNoSuchEndpoint, http.StatusNotFound},
	{kv.ErrCASMismatch, http.StatusConflict},
	{kv.ErrTxnFailed, http.StatusConflict},
	// Consul answers 500 "No cluster leader" after holding the request,
	// and 500 for a write whose commit it lost track of; its clients
	// retry a 500 and treat other 5xx as fatal.
	{kv.ErrNoLeader, http.StatusInternalServerError},
	{kv.ErrUnknownOutcome, http.StatusInternalServerError},
	{kv.ErrRangeMoved, http.StatusInternalServerError}, // nothing done: a retry finds the range
	{kv.ErrClosed, http.StatusServiceUnavailable},
	{kv.ErrNotImplemented, http.StatusNotImplemented},
	{kv.ErrIdempotencyKeyReused, http.StatusUnprocessableEntity},
	{kv.ErrSession, http.StatusInternalServerError}, // Consul's status; clients match the text
	{kv.ErrPermissionDenied, http.StatusForbidden},
	{kv.ErrACLNotFound, http.StatusForbidden},
	{kv.ErrACLDisabled, http.StatusUnauthorized},
	{kv.ErrNoSpace, http.StatusInsufficientStorage},
}

// Status is the HTTP status err is answered with (500 for anything else).
func Status(err error) int {
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// Message is the one-line reason an error answer carries: Consul's exact
// words where its clients match on them.
func Message(err error) string {
	if errors.Is(err, kv.ErrNoLeader) {
		return "No cluster leader"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// Sentinel is the error a client reports for an error answer: the one
// its HeaderError names, else the one its status stands for; nil for a
// status without one (200; 404/409/429, whose meaning depends on the
// request: a missing key, a failed check, an unhealthy report; 500, which
// without HeaderError could be anything).
func Sentinel(status int, h http.Header) error {
	if code := h.Get(HeaderError); code != "" {
		if err := kv.FromCode(code, ""); err != nil && kv.Code(err) == code {
			return err
		}
	}
	switch status {
	case http.StatusNotFound, http.StatusConflict, http.StatusTooManyRequests, http.StatusInternalServerError:
		return nil
	}
	for _, s := range statuses {
		if s.status == status {
			return s.err
		}
	}
	return nil
}

// SessionEntry is Consul's JSON shape of a session.
type SessionEntry struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration // nanoseconds
	Behavior      string
	TTL           string
	NodeChecks    []string // [] rather than null: clients compare it
	ServiceChecks []struct{ ID, Namespace string }
	CreateIndex   uint64
	ModifyIndex   uint64
}

// FromSession is s on the wire.
func FromSession(s kv.Session) SessionEntry {
	checks := s.NodeChecks
	if checks == nil {
		checks = []string{}
	}
	return SessionEntry{ID: s.ID, Name: s.Name, Node: s.Node, LockDelay: s.LockDelay, Behavior: s.Behavior,
		TTL: s.TTL, NodeChecks: checks, CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex}
}

// Session is e as the store's session.
func (e SessionEntry) Session() kv.Session {
	return kv.Session{ID: e.ID, Name: e.Name, Node: e.Node, LockDelay: e.LockDelay, Behavior: e.Behavior,
		TTL: e.TTL, NodeChecks: e.NodeChecks, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}
}
