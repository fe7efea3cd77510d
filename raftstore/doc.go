// Package raftstore is raftkv's public facade: Open starts a node, and a
// RaftStore is the Go API of that embedded node (keys, locks, sessions,
// membership, snapshots). Behind it are the node's process (internal/node:
// the one TCP port, TLS, the node-to-node protocols, the HTTP API's server,
// peer authentication), its raft group (internal/group: a hashicorp/raft
// instance, its log and stable store in hashicorp/raft-wal, or raft-boltdb
// for data dirs that hold one, file snapshots, the Badger state machine of
// package fsm, ReadIndex, forwarding and membership) and the features
// attached to the group (internal/sessions, internal/aclsys).
//
// The data path of a write, from the Go API or an HTTP request alike:
//
//	RaftStore.Set or an httpd handler → group.Propose (validates):
//	  leader? raft.Apply : forward to the leader (which validates again)
//	  → fsm.ApplyBatch → one Badger transaction
//
// Linearizable reads use ReadIndex: the leader records its commit index,
// confirms it is still leader with one heartbeat round shared by all
// concurrent reads, and the reading node (leader or follower) waits until
// its FSM has applied that index.
//
// Requests follow the leader, not timers: a call in flight to a leader is
// abandoned as soon as this node learns of a newer one
// (internal/leaderwatch). A request that finds no leader waits for one as
// Consul does (kv.WithLeaderHold) unless its client asked to be answered at
// once. The design and its reasons are in internal/group/DESIGN.md.
//
// Errors are package kv's sentinels, every one re-exported here
// (ErrNotFound, ErrCASMismatch, ErrNoLeader, ...): test for them with
// errors.Is. Config.TLS names PEM files; package tlscerts makes them.
package raftstore
