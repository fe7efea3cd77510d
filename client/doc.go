// Package client is the Go client of raftkv's HTTP API.
//
// It talks to several endpoints and fails over between them on connection
// errors and on nodes without a leader (it asks them, with
// X-Raftkv-Fail-Fast, to answer at once rather than hold the request as
// they hold Consul's). Every logical write carries an Idempotency-Key
// generated once for it, so retrying a write after an unknown outcome (an
// answer saying so, or a connection lost after sending) is safe: the cluster applies it at most
// once and answers the retry with the first result. Errors match the
// store's sentinels (kv.ErrNotFound, kv.ErrCASMismatch, ...) with errors.Is.
//
// A write of one key goes first to the leader of the key's range when an
// earlier answer named it (X-Raftkv-Route) and it is one of the endpoints:
// a hop less than through a follower. The route is a hint, dropped when
// its leader fails an attempt; see routes.go.
//
// What retrying cannot change (a TLS mismatch with a node, an answer that
// is not raftkv's) ends a call at once with an error matching
// ErrPermanent; see SetupError and UnexpectedAnswerError. A call that gives
// up after its Timeout says what every endpoint last answered.
//
// Keys, transactions, ACL records and ranges travel in package api's
// shapes, the ones the server answers with: TxnOp, TxnError, ACLPolicy,
// ACLLink, ACLToken, Range, RangeReplica and RangeSplit are its types
// under the client's names.
package client
