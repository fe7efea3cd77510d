package api

import (
	"net/url"
	"strconv"
)

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

// RouteHeader is the header of a write's answer that says where writes of
// its key go: the range holding the key and the address of that range's
// leader, as the answering node knows them (Route.Header's form). A
// client may send later writes of keys in [Start, End) to that address
// itself, sparing the answering node the hop to the leader; any node
// still takes any write.
const RouteHeader = "X-Raftkv-Route"

// Route is a range's span and its leader's address.
type Route struct {
	Range      uint64
	Generation uint64
	Start, End string // End "" : the end of the keyspace
	Leader     string // host:port, the node's advertised address
}

// Contains says whether key falls in the route's span.
func (r Route) Contains(key string) bool {
	return key >= r.Start && (r.End == "" || key < r.End)
}

// Header is the route in RouteHeader's form, a URL query:
// range=ID&gen=G&start=S&end=E&leader=ADDR.
func (r Route) Header() string {
	return url.Values{"range": {strconv.FormatUint(r.Range, 10)}, "gen": {strconv.FormatUint(r.Generation, 10)},
		"start": {r.Start}, "end": {r.End}, "leader": {r.Leader}}.Encode()
}

// ParseRoute reads a RouteHeader value; false if it is not one, or names
// no leader.
func ParseRoute(h string) (Route, bool) {
	q, err := url.ParseQuery(h)
	if err != nil {
		return Route{}, false
	}
	id, err1 := strconv.ParseUint(q.Get("range"), 10, 64)
	gen, err2 := strconv.ParseUint(q.Get("gen"), 10, 64)
	r := Route{Range: id, Generation: gen, Start: q.Get("start"), End: q.Get("end"), Leader: q.Get("leader")}
	if err1 != nil || err2 != nil || r.Leader == "" || (r.End != "" && r.End <= r.Start) {
		return Route{}, false
	}
	return r, true
}
