package api

// Range is one range of the keyspace as the operator endpoints show it
// (GET /v1/operator/ranges): its descriptor and what its leader last
// reported of it. A range holds the keys in [Start, End); each range is
// its own raft group, named by ID.
//
// Unlike the Consul shapes, these are raftkv's own; every field is always
// present, so that scripts reading them need no defaults.
type Range struct {
	// ID names the range (and its raft group); IDs are never reused.
	ID uint64
	// Start is the range's first key; End the first key after it, ""
	// for the end of the keyspace.
	Start string
	End   string
	// Generation grows at every change of the bounds or the replicas:
	// (ID, Generation) names one span on one set of replicas.
	Generation uint64
	Replicas   []RangeReplica
	// Leader is the node ID of the range's leader as the answering node
	// knows it; "" when it knows none.
	Leader string
	// Keys and Bytes are how many keys the range holds and their size
	// (keys and values), and WritesPerSec its recent write rate, as its
	// leader last measured them: they guide where to split, they are
	// not exact.
	Keys         int64
	Bytes        int64
	WritesPerSec float64
	// FromMeta: the answering node holds no replica of the range (yet: a
	// node that just joined), and lists it from the meta range's copy of
	// the range map, with no leader, size or rate.
	FromMeta bool
}

// RangeReplica is one member of a range's raft group. A non-voter gets
// the range's log but does not count towards its quorum.
type RangeReplica struct {
	Node  string // the node's server ID
	Voter bool
}

// RangeSplit is the answer to a split (POST /v1/operator/range/split):
// the two ranges the split made. Left keeps the parent's ID and ends at
// the split key; Right is the new range, from the split key to the
// parent's End.
type RangeSplit struct {
	Left  Range
	Right Range
}
