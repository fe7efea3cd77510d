// Package api holds the JSON shapes of raftkv's Consul-compatible HTTP API,
// shared by the server (httpd) and the Go client, so that the two sides
// cannot drift apart: a key (DirEntry), a transaction's operations and
// answer (TxnOp, TxnResponse), the ACL records (ACLPolicy, ACLToken), and
// the operator's view of the keyspace's ranges (Range, RangeSplit).
//
// The shapes are Consul's, field for field and in Consul's order, where
// Consul has them (ranges are raftkv's own): what the server encodes from
// them is what its answers carry, byte for byte. They depend on nothing of
// raftkv's but package kv, whose entries a DirEntry carries.
package api
