// Package fsm is raftkv's replicated state machine: a raft.BatchingFSM
// whose state is a Badger database.
//
// Every raft log entry is an Entry of one kind — a KV command, a session
// create or destroy, an ACL change, a read-replica mark — written by
// EncodeEntry (KV entries in the v1/v2 command encoding every version
// reads, the others as v3) or by EncodeLegacyEntry (every kind as the
// one-op commands the versions before v3 wrote, for clusters that still
// have such members), and read by DecodeEntry, which reads every version
// ever written. The FSM applies each entry by its kind; the same log gives
// the same state, answers and notifications on every node, whatever
// batches raft cut it into. DESIGN.md describes the formats, the layout in
// Badger and the rules that keep it deterministic.
package fsm
