package group

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

func set(t *testing.T, g *Group, key, value string) {
	t.Helper()
	if _, err := g.Apply(ctx(t), &kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: key, Value: []byte(value)}}}); err != nil {
		t.Fatalf("set %s on %s: %v", key, g.ID(), err)
	}
}

// get reads key linearizably; "" if it does not exist.
func get(t *testing.T, g *Group, key string) string {
	t.Helper()
	res, err := g.Read(ctx(t), kv.Query{Kind: kv.ReadGet, Key: key})
	if err != nil {
		t.Fatalf("get %s on %s: %v", key, g.ID(), err)
	}
	if len(res.Entries) == 0 {
		return ""
	}
	return string(res.Entries[0].Value)
}

// Two groups on the same three nodes, on the same ports: each elects its
// own leader and keeps its own data. Writes forwarded from a follower
// reach their own group's leader, reads see only their group's keys, and
// moving one group's leadership leaves the other's alone.
func TestTwoGroupsOnOneNode(t *testing.T) {
	groups := []uint64{0, 7}
	nodes := []*testNode{
		startNode(t, "n1", groups, map[uint64]bool{0: true}),
		startNode(t, "n2", groups, map[uint64]bool{7: true}),
		startNode(t, "n3", groups, nil),
	}
	joinAll(t, nodes, 0)
	joinAll(t, nodes, 7)
	l0, l7 := leaderOf(t, nodes, 0), leaderOf(t, nodes, 7)
	if l0 == l7 {
		other := nodes[(l7+1)%3].node.ID()
		if err := nodes[l7].groups[7].Membership().TransferLeadership(ctx(t), other); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "group 7 led elsewhere", func() error {
			if l7 = leaderOf(t, nodes, 7); l7 == l0 {
				return fmt.Errorf("both led by %s", nodes[l0].node.ID())
			}
			return nil
		})
	}
	// A node that follows in both groups writes to each: forwarded to two
	// different leaders on one forwarding stream per leader.
	f := 3 - l0 - l7
	set(t, nodes[f].groups[0], "k", "zero")
	set(t, nodes[f].groups[7], "k", "seven")
	set(t, nodes[f].groups[7], "only-in-7", "x")
	for _, n := range nodes {
		if got := get(t, n.groups[0], "k"); got != "zero" {
			t.Fatalf("group 0 on %s: k = %q", n.node.ID(), got)
		}
		if got := get(t, n.groups[7], "k"); got != "seven" {
			t.Fatalf("group 7 on %s: k = %q", n.node.ID(), got)
		}
		if got := get(t, n.groups[0], "only-in-7"); got != "" {
			t.Fatalf("group 0 on %s sees group 7's key: %q", n.node.ID(), got)
		}
	}

	// Group 0's leadership moves; group 7's leader and term stay.
	term7 := nodes[l7].groups[7].raft.CurrentTerm()
	moveLeadership(t, nodes, 0, l0, f)
	if !nodes[l7].groups[7].IsLeader() || nodes[l7].groups[7].raft.CurrentTerm() != term7 {
		t.Fatalf("group 7 changed with group 0's leadership: leader %v, term %d → %d",
			nodes[l7].groups[7].IsLeader(), term7, nodes[l7].groups[7].raft.CurrentTerm())
	}
	set(t, nodes[l0].groups[0], "after", "moved")
	if got := get(t, nodes[l7].groups[0], "after"); got != "moved" {
		t.Fatalf("group 0 after its leader moved: %q", got)
	}
	if got := get(t, nodes[l0].groups[7], "after"); got != "" {
		t.Fatalf("group 7 sees group 0's key: %q", got)
	}
}
