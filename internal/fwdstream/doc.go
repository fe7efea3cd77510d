// Package fwdstream carries the writes a node forwards to its leader over
// one long-lived connection per leader, with every forwarded write of the
// node in flight on it at once, instead of one HTTP request each.
//
// Why: with clients spread over the nodes, two writes in three arrive at a
// follower. Sent one HTTP/1.1 request each, their cost on the leader (a
// request to parse, a response to frame, a socket write and read each) was
// what kept raftkv's write throughput well below what the same cluster
// does with its clients on the leader. Here a writer goroutine per
// direction coalesces whatever is queued into one socket write, so the
// per-write cost falls as concurrency rises.
//
// Frames are length-prefixed (see frame.go): the client opens with a hello
// (its credential) that the server accepts or refuses, then sends requests
// (id, the caller's remaining time, the command in the state machine's own
// encoding) and gets responses by id, in any order.
//
// A write's fate is reported the way package peerrpc reports it: a request
// that certainly never left this node fails with kv.ErrNoLeader (retry
// elsewhere, nothing was done); one that may have reached the leader and
// got no answer fails with kv.ErrUnknownOutcome. A caller that gives up on
// a request still queued takes it back, so it is never sent later.
//
// The stream is an optimisation: a peer that cannot set one up (an older
// version, a refusal, a dial failure) gets ErrUnavailable, which promises
// nothing was sent, and the caller uses the HTTP call instead.
package fwdstream
