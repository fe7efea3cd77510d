// Package kv holds the vocabulary shared by every layer of raftkv: the stored
// Entry, the operations a write is made of (Op, Verb, Command), the outcome of
// a write (Result), the limits the API enforces, and the sentinel errors that
// callers test with errors.Is.
//
// It has no dependencies on raft, Badger or HTTP, so the HTTP layer, the Go
// client and embedders can all speak it without pulling in the node.
package kv
