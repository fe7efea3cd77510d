// Package rangemap is the vocabulary of a keyspace cut into ranges: a
// range's descriptor (ID, bounds, generation, replicas), its encoding,
// and the rules a split must follow. It is pure data: it neither stores
// nor replicates anything, so the FSM (which keeps each range's own
// descriptor) and the node's router share one definition of what a range
// covers.
package rangemap
