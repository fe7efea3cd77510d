// Package raftstore is the Go API of an embedded raftkv node: Open starts
// a node (package internal/node: the port, TLS, the node-to-node
// protocols, the HTTP API) with its one raft group (internal/group: raft,
// the Badger state machine, ReadIndex, forwarding, membership) and the
// features attached to it (sessions, ACLs); the methods read and write
// keys, locks, sessions, membership and snapshots through that group.
//
// Sentinel errors are re-exported here, so that an embedder needs only
// this package and kv (the vocabulary: entries, queries, results).
package raftstore
