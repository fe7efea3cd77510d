// Package raftstore is one raftkv node: a hashicorp/raft instance (log and
// stable store in hashicorp/raft-wal, or raft-boltdb for data dirs that
// hold one; see internal/logstore; file snapshots), the Badger FSM, and
// the HTTP API, all on one TCP port (package mux).
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
// leaderwatch). A request that finds no leader waits for one as Consul
// does (kv.WithLeaderHold) unless its client asked to be answered at once.
// The design and its reasons are in raftstore/DESIGN.md.
package raftstore
