// Package group runs one raft group on a node: its raft instance, log
// store, snapshots and Badger state machine, linearizable reads
// (ReadIndex), the policy of running a request here or forwarding it to
// the leader, and membership. The node it runs on (package node) lends it
// the shared port and the node-to-node clients; features (sessions, ACLs)
// attach through Hooks and are unknown to it.
//
// A write is a typed log entry, validated where it enters the cluster
// (Propose) and where the leader receives it from a peer
// (PeerCalls.ApplyForwarded), nowhere else. DESIGN.md walks one write
// through, hop by hop.
package group
