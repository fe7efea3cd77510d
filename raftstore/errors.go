package raftstore

import (
	"github.com/raftkv/raftkv/internal/integrity"
	"github.com/raftkv/raftkv/kv"
)

// Package kv's sentinel errors, every one re-exported so that an embedder
// can test for them with this package alone. Package kv is their home (the
// HTTP API and the Go client use them too); tests/apisurface fails if one
// is not re-exported here.
var (
	ErrNotFound       = kv.ErrNotFound
	ErrNoLeader       = kv.ErrNoLeader
	ErrUnknownOutcome = kv.ErrUnknownOutcome
	ErrCASMismatch    = kv.ErrCASMismatch
	ErrTxnFailed      = kv.ErrTxnFailed
	ErrInvalid        = kv.ErrInvalid
	ErrTooLarge       = kv.ErrTooLarge
	ErrClosed         = kv.ErrClosed
	// ErrNotImplemented: the feature is not available yet.
	ErrNotImplemented = kv.ErrNotImplemented
	// ErrUnknownPeer: a membership change names a server that is not a
	// member.
	ErrUnknownPeer = kv.ErrUnknownPeer
	// ErrSession: a session request broke a rule (an unknown session, a
	// TTL out of range, a node or check that does not exist).
	ErrSession = kv.ErrSession
	// ErrIdempotencyKeyReused: an idempotency key came with a different
	// write than the one it was first used for; nothing was done.
	ErrIdempotencyKeyReused = kv.ErrIdempotencyKeyReused
	// ErrPermissionDenied: the token may not do this (ACLs); nothing was
	// done.
	ErrPermissionDenied = kv.ErrPermissionDenied
	// ErrACLNotFound: a token or policy does not exist.
	ErrACLNotFound = kv.ErrACLNotFound
	// ErrACLDisabled: an ACL operation on a cluster without ACLs.
	ErrACLDisabled = kv.ErrACLDisabled
	// ErrNoSuchEndpoint: a request names no endpoint of the HTTP API.
	ErrNoSuchEndpoint = kv.ErrNoSuchEndpoint
	// ErrNoSpace: a disk in the cluster is full; the write was NOT
	// applied. Writes are taken again once space is freed.
	ErrNoSpace = kv.ErrNoSpace
	// ErrRangeMoved: the key is not in the range asked (a split gave it to
	// another); nothing was done. Nodes retry on the right range.
	ErrRangeMoved = kv.ErrRangeMoved
	// ErrDamaged: the data dir holds damaged files; the error names the
	// file and the problem (docs/OPERATIONS.md, "Damaged data").
	ErrDamaged = integrity.ErrDamaged
)
