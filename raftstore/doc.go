// Package raftstore is one raftkv node: a hashicorp/raft instance (log and
// stable store in raft-boltdb, file snapshots), the Badger FSM, and the HTTP
// API, all on one TCP port (package mux).
//
// The data path of a write:
//
//	httpd handler → RaftStore.Apply → leader? raft.Apply : forward to leader
//	             → fsm.ApplyBatch → one Badger transaction
//
// Linearizable reads use ReadIndex: the leader records its commit index,
// confirms it is still leader with one heartbeat round shared by all
// concurrent reads, and the reading node (leader or follower) waits until
// its FSM has applied that index.
//
// Requests follow the leader, not timers: a call in flight to a leader is
// abandoned as soon as this node learns of a newer one (package
// leaderwatch), and a node cut off from the majority answers at once. See
// DESIGN.md.
package raftstore
