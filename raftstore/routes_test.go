package raftstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// The Go client, given every node, sends a write straight to the leader
// of its key's range once an answer named it: the node it prefers, which
// leads neither range, forwards the first write of each range and no
// more. Every write lands.
func TestClientWritesGoStraightToTheirRangesLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	if _, err := c.nodes[c.leader()].SplitRange(ctx(t), "m/"); err != nil {
		t.Fatal(err)
	}
	var ranges []client.Range
	waitFor(t, 10*time.Second, "a leader for both ranges", func() error {
		var err error
		if ranges, err = c.nodes[0].Ranges(ctx(t)); err != nil {
			return err
		}
		if len(ranges) != 2 || ranges[0].Leader == "" || ranges[1].Leader == "" {
			return fmt.Errorf("%+v", ranges)
		}
		return nil
	})
	f := -1 // a node that leads neither range
	for i, n := range c.nodes {
		if n.ID() != ranges[0].Leader && n.ID() != ranges[1].Leader {
			f = i
		}
	}
	// Node f knows both leaders (its answers name them) before the writes.
	waitFor(t, 10*time.Second, c.nodes[f].ID()+" knowing both leaders", func() error {
		for _, key := range []string{"a", "m/"} {
			if _, _, ok := c.nodes[f].ranges.Route(key); !ok {
				return fmt.Errorf("no leader of %q's range known", key)
			}
		}
		return nil
	})
	endpoints := []string{c.nodes[f].Addr()}
	for i, n := range c.nodes {
		if i != f {
			endpoints = append(endpoints, n.Addr())
		}
	}
	cl, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	forwarded := func() float64 { // by every range of node f: its ranges add to the node's metrics
		return forwardedCount(t, c.nodes[f], "apply") + forwardedCount(t, c.nodes[f], "apply_http") + forwardedCount(t, c.nodes[f], "apply_elsewhere")
	}
	before := forwarded()
	for i := range 20 {
		for _, prefix := range []string{"a/", "m/"} {
			if err := cl.Put(ctx(t), fmt.Sprintf("%s%d", prefix, i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := forwarded() - before; n > 2 {
		t.Fatalf("%s forwarded %v of 40 writes; want the first of each range only", c.nodes[f].ID(), n)
	}
	for i := range 20 {
		for _, prefix := range []string{"a/", "m/"} {
			if got := mustGetValue(t, c.nodes[f], fmt.Sprintf("%s%d", prefix, i)); got != "v" {
				t.Fatalf("%s%d = %q", prefix, i, got)
			}
		}
	}
}
