// Package rangemap is the vocabulary of a keyspace cut into ranges: a
// range's descriptor (ID, bounds, generation, replicas), the map that
// finds the range of a key or the ranges of a prefix, and the rules a
// split must follow. It is pure data: it neither stores nor replicates
// anything, so the FSM (which keeps each range's own descriptor), the meta
// range (which keeps the routing copy) and the routers of nodes and
// clients share one definition of what a range covers.
package rangemap
