package raftstore

import "github.com/raftkv/raftkv/kv"

// The rest of package kv's sentinel errors, re-exported like those in
// store.go so that an embedder can test for every one of them with this
// package alone. Package kv is their home (the HTTP API and the Go client
// use them too); tests/apisurface fails if one is not re-exported here.
var (
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
)
