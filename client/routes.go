package client

import (
	"slices"
	"strings"
	"sync"

	"github.com/raftkv/raftkv/api"
)

// Routes. A write's answer names the range of its key and that range's
// leader (api.RouteHeader). The client keeps the newest route it heard for
// each span, and sends the next single-key writes of keys in it to that
// leader first, when the leader is one of its endpoints: whichever node
// it reached would forward the write to that leader anyway, so this
// spares a hop. Reads are not routed (every node serves linearizable
// reads itself). A route is a hint, never a requirement: any node takes
// any write, so a stale route costs at most one attempt (the old leader
// forwards the write, or refuses it without doing anything and the call
// moves on to the other endpoints), and a route whose attempt failed is
// dropped.

// routeCache holds routes sorted by Start, with no two overlapping.
type routeCache struct {
	mu     sync.Mutex
	routes []api.Route
}

// learn keeps r in place of the routes its span overlaps, unless one of
// them is the same range at a newer generation (an answer from a node
// behind the others). Across ranges it cannot tell which answer is newer
// and takes the last: a route is only a hint.
func (rc *routeCache) learn(r api.Route) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	kept := rc.routes[:0:0]
	for _, old := range rc.routes {
		if !overlap(old, r) {
			kept = append(kept, old)
			continue
		}
		if old.Range == r.Range && old.Generation > r.Generation {
			return
		}
	}
	kept = append(kept, r)
	slices.SortFunc(kept, func(a, b api.Route) int { return strings.Compare(a.Start, b.Start) })
	rc.routes = kept
}

// lookup finds the route of key.
func (rc *routeCache) lookup(key string) (api.Route, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	i, _ := slices.BinarySearchFunc(rc.routes, key, func(r api.Route, k string) int { return strings.Compare(r.Start, k) })
	// routes[i-1] starts at or before key when routes[i] does not start at it.
	for _, j := range []int{i, i - 1} {
		if j >= 0 && j < len(rc.routes) && rc.routes[j].Contains(key) {
			return rc.routes[j], true
		}
	}
	return api.Route{}, false
}

// forget drops the route of key.
func (rc *routeCache) forget(key string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.routes = slices.DeleteFunc(rc.routes, func(r api.Route) bool { return r.Contains(key) })
}

func overlap(a, b api.Route) bool {
	return (a.End == "" || b.Start < a.End) && (b.End == "" || a.Start < b.End)
}

// routedEndpoint is the endpoint to try first for a write of key: the
// leader its route names, if that is one of the endpoints; -1 if none.
func (c *Client) routedEndpoint(key string) int {
	r, ok := c.routes.lookup(key)
	if !ok {
		return -1
	}
	for i, e := range c.endpoints {
		if hostOf(e) == r.Leader {
			return i
		}
	}
	return -1
}

// learnRoute keeps the route an answer names.
func (c *Client) learnRoute(resp *response) {
	if h := resp.header.Get(api.RouteHeader); h != "" {
		if r, ok := api.ParseRoute(h); ok {
			c.routes.learn(r)
		}
	}
}
