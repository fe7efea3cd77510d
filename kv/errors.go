package kv

import "errors"

// Sentinel errors. Every layer wraps them with context; callers test with
// errors.Is. This package is their home: package raftstore re-exports every
// one (tests/apisurface checks it), the HTTP status of each is decided in
// one place (internal/wire, shared by httpd and the Go client; tests/docs
// checks that each has one), and the wire code used between nodes in
// Code/FromCode below.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrInvalid: the request is malformed; nothing was done.
	ErrInvalid = errors.New("invalid request")
	// ErrTooLarge: a value or a transaction is over the limit; nothing was done.
	ErrTooLarge = errors.New("request too large")
	// ErrNoLeader: no leader is known, or the leader could not be reached
	// before the write was sent. The write was NOT applied; retry.
	ErrNoLeader = errors.New("no leader")
	// ErrUnknownOutcome: the write was proposed but its fate is unknown
	// (leadership lost, timeout, connection lost after sending). It may or may
	// not have been applied.
	ErrUnknownOutcome = errors.New("outcome unknown, the write may have been applied")
	// ErrCASMismatch: a compare-and-set did not match; nothing was changed.
	ErrCASMismatch = errors.New("compare-and-set index mismatch")
	// ErrTxnFailed: a check in a transaction failed; nothing was changed.
	ErrTxnFailed = errors.New("transaction check failed")
	// ErrNotImplemented: the feature is not available yet.
	ErrNotImplemented = errors.New("not implemented")
	// ErrUnknownPeer: a membership change names a server that is not a member.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrClosed: the node is shutting down.
	ErrClosed = errors.New("node closed")
	// ErrSession: a session request broke a rule (an unknown session, a
	// TTL out of range, a node or check that does not exist). Consul answers
	// these with 500 and clients match on the text.
	ErrSession = errors.New("session request refused")
	// ErrIdempotencyKeyReused: an Idempotency-Key came with a different
	// request than the one it was first used for; nothing was done.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
	// ErrPermissionDenied: the request's token may not do this (ACLs), or
	// an ACL operation is no longer allowed; nothing was done. The message
	// is Consul's ("Permission denied: ..."): clients match on it.
	ErrPermissionDenied = errors.New("Permission denied")
	// ErrACLNotFound: the request's token, or the token or policy it asks
	// for, does not exist (Consul's "ACL not found").
	ErrACLNotFound = errors.New("ACL not found")
	// ErrACLDisabled: an ACL endpoint on a cluster without ACLs.
	ErrACLDisabled = errors.New("ACL support disabled")
	// ErrNoSuchEndpoint: the request's path names no endpoint of the API
	// (a 404 that is not a missing key).
	ErrNoSuchEndpoint = errors.New("no such endpoint")
	// ErrNoSpace: a disk in the cluster is full; the write was NOT applied.
	// Writes are taken again once space is freed.
	ErrNoSpace = errors.New("insufficient disk space")
	// ErrRangeMoved: the key is not in the range the request was sent to
	// (a split gave it to another range); nothing was done. Nodes retry on
	// the right range themselves: a client sees it only from a node that
	// could not find that range.
	ErrRangeMoved = errors.New("key not in this range")
)

// codes is the table used to carry sentinel errors between nodes (forwarding).
var codes = []struct {
	code string
	err  error
}{
	{"not_found", ErrNotFound},
	{"invalid", ErrInvalid},
	{"too_large", ErrTooLarge},
	{"no_leader", ErrNoLeader},
	{"unknown_outcome", ErrUnknownOutcome},
	{"cas_mismatch", ErrCASMismatch},
	{"txn_failed", ErrTxnFailed},
	{"not_implemented", ErrNotImplemented},
	{"unknown_peer", ErrUnknownPeer},
	{"closed", ErrClosed},
	{"session", ErrSession},
	{"idempotency_key_reused", ErrIdempotencyKeyReused},
	{"permission_denied", ErrPermissionDenied},
	{"acl_not_found", ErrACLNotFound},
	{"acl_disabled", ErrACLDisabled},
	{"no_space", ErrNoSpace},
	{"no_such_endpoint", ErrNoSuchEndpoint},
	{"range_moved", ErrRangeMoved},
}

// Code returns the wire code of the sentinel err wraps, or "internal".
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// FromCode rebuilds an error from a wire code and message, so that
// errors.Is works on the far side of a forwarded request.
func FromCode(code, msg string) error {
	for _, c := range codes {
		if c.code == code {
			if msg == "" || msg == c.err.Error() {
				return c.err
			}
			return &Error{Msg: msg, Sentinel: c.err}
		}
	}
	return errors.New(msg)
}
