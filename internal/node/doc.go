// Package node owns what exists once per raftkv process: the data dir's
// lock, the listener and its mux (raft, forwarding streams and HTTP on one
// port), TLS, the clients and servers of the node-to-node protocols, the
// HTTP server, the node's identity, and the authentication of peers. The
// raft groups it carries (package group) attach with AddGroup and name
// themselves on the wire by their IDs; nothing here assumes there is only
// one.
package node
