// Package httpd is raftkv's HTTP API: Consul-compatible /v1/kv, cluster
// status and operator endpoints, health, readiness and Prometheus metrics
// (reference: docs/API.md).
//
// It knows nothing of raft. New takes the node's stores by concern
// (Stores: KVStore, SessionStore, SnapshotStore, ACLStore, ClusterStore,
// Node and, optional, RangeStore, each declared next to the handlers that
// use it), implemented by a node's raft group and its features (package
// raftstore wires them: group.Group, group.Membership, sessions.Service,
// aclsys.System) and, in the tests, by a real state machine (fsm.FSM) with
// small fakes for the rest. Handlers turn requests into kv.Query and
// kv.Command values and results into responses; the store validates a
// write, and the token's check rides along with it (kv.WithCheck). The
// JSON shapes the handlers answer with are package api's, shared with the
// Go client.
//
// A handler returns its error instead of writing it (handlerFunc), and
// writeError (errors.go) is the one place an error becomes an answer: the
// status of a sentinel (table in internal/wire), Consul's words, the
// X-Raftkv-Error code, and the two answers Consul shapes otherwise (a
// rolled-back transaction's 409, a 405 with Allow). outcomeWriter marks
// every error answer to a write with X-Raftkv-Outcome.
package httpd
