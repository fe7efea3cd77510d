// Package ranges runs a node's share of a keyspace cut into ranges: range
// 0 (the meta range, which holds sessions and ACLs too) and the ranges
// splits made, each its own raft group over the node's one state machine
// store, and the router that sends every request to the range of its keys.
//
// The router is what the HTTP API and the Go API see as the keyspace: a
// single-key request goes to its range's group (which runs it here or
// forwards it to that range's leader); a range that refuses a key (a split
// gave it to another range since it was routed: kv.ErrRangeMoved, nothing
// done) is tried again once the node's own replicas have caught up with
// the split. Splits are proposed here: an ID from range 0, then the split
// in the parent range's own log; every node starts the new range's group
// when its replica of the parent applies the split (docs/RANGES.md).
package ranges
