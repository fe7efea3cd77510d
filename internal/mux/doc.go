// Package mux puts raft and HTTP on one TCP port.
//
// A root listener is split with cmux: connections that start with RaftMarker
// (written by our own Dial) go to the raft StreamLayer, those that start
// with ForwardMarker to the forwarding stream's listener, everything else
// to the HTTP server. Each side gets its own listener whose
// Close stops only that side: cmux's child listeners would close the shared
// root, so raft's transport shutting down would take HTTP with it.
//
// Matching has a read deadline, so a client that connects and sends nothing
// is dropped rather than holding a slot forever; bad raft connections are
// dropped before Accept returns, because raft's transport backs off on Accept
// errors.
package mux
