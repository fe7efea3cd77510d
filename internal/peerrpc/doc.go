// Package peerrpc is the node-to-node protocol: what a node asks the
// leader (forwarded writes, read indexes, membership changes, restores,
// session renewals, autopilot reports) and what the leader asks the others
// (leadership probes, raft stats). Calls share the one port with raft and
// the public API, under Prefix, as JSON over pooled keep-alive HTTP.
//
// The client sorts failures by what they mean for the caller: a call that
// failed before its request was fully written did nothing (kv.ErrNoLeader:
// try elsewhere); one that failed after may have happened
// (kv.ErrUnknownOutcome). The server side needs a Node, declared here.
// Requests are never forwarded again by the receiver, so there are no loops.
package peerrpc
