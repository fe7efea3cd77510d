package raftstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// add starts one more node, which joins through node 0.
func (c *testCluster) add() int {
	c.t.Helper()
	c.nodes = append(c.nodes, nil)
	c.dirs = append(c.dirs, c.t.TempDir())
	c.addrs = append(c.addrs, "127.0.0.1:0")
	i := len(c.nodes) - 1
	c.start(i)
	c.addrs[i] = c.nodes[i].Addr()
	return i
}

// replicasOf describes node s's ranges as "start: replicas" lines (voters
// plain, non-voters with a ~), only of the ranges it holds.
func replicasOf(t *testing.T, s *RaftStore) string {
	t.Helper()
	rs, err := s.Ranges(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range rs {
		var reps []string
		for _, rep := range r.Replicas {
			name := rep.Node
			if !rep.Voter {
				name = "~" + name
			}
			reps = append(reps, name)
		}
		slices.Sort(reps)
		lines = append(lines, fmt.Sprintf("%q: %s", r.Start, strings.Join(reps, ",")))
	}
	return strings.Join(lines, "; ")
}

func waitReplicas(t *testing.T, s *RaftStore, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, "replicas "+want+" on "+s.ID(), func() error {
		if got := replicasOf(t, s); got != want {
			return fmt.Errorf("replicas %s", got)
		}
		return nil
	})
}

// Every range follows the cluster's membership: a node that joins after
// the splits gets a replica of every range (with its keys), a removed
// node leaves every range, so that losing one more node leaves every
// range its majority.
func TestRangesFollowMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	keys := []string{"a/1", "m/1", "t/1"}
	for _, k := range keys {
		mustSet(t, c.nodes[0], k, "v-"+k)
	}
	for _, at := range []string{"m/", "t/"} {
		if _, err := c.nodes[0].SplitRange(ctx(t), at); err != nil {
			t.Fatal(err)
		}
	}
	n4 := c.add()
	c.waitVoters(4)
	all := `"": n1,n2,n3,n4; "m/": n1,n2,n3,n4; "t/": n1,n2,n3,n4`
	for _, s := range c.nodes {
		waitReplicas(t, s, all)
	}
	for _, k := range keys {
		if got := mustGetValue(t, c.nodes[n4], k, Stale()); got != "v-"+k {
			t.Fatalf("the new node's own replica has %s = %q", k, got)
		}
	}
	// The meta range's copy of the range map follows: every range, its
	// current generation and replicas, on every node.
	for _, s := range c.nodes {
		waitFor(t, 20*time.Second, "the range map in range 0 on "+s.ID(), func() error {
			return sameAsRangeMap(t, s)
		})
	}

	if err := c.nodes[1].Remove(ctx(t), "n1"); err != nil {
		t.Fatal(err)
	}
	c.stop(0)
	rest := `"": n2,n3,n4; "m/": n2,n3,n4; "t/": n2,n3,n4`
	for _, s := range c.nodes[1:] {
		waitReplicas(t, s, rest)
	}
	// One more node down: every range still has two of its three voters.
	if err := c.nodes[1].Kill(); err != nil {
		t.Fatal(err)
	}
	c.nodes[1] = nil
	for _, k := range keys {
		wctx, cancel := context.WithTimeout(ctx(t), 20*time.Second)
		if _, err := c.nodes[2].Set(wctx, k, []byte("after")); err != nil {
			t.Fatalf("write %s with n1 removed and n2 down: %v", k, err)
		}
		cancel()
	}
}

// A node that was down through a split and catches up on the parent from
// a snapshot taken after it never applies the split: it gets its replica
// of the new range from that range's leader.
func TestNodeThatMissedASplitGetsTheRange(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 100 * time.Millisecond
		// raft-wal keeps serving a compacted prefix until its whole
		// segment goes; bbolt deletes what raft compacts at once.
		cfg.RaftLogStore = "boltdb"
	})
	f := c.followers()[0]
	stoppedAt := c.nodes[f].group.AppliedIndex()
	c.stop(f)
	l := c.leader()
	split, err := c.nodes[l].SplitRange(ctx(t), "m/")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		mustSet(t, c.nodes[l], "a/"+strconv.Itoa(i), strconv.Itoa(i))
		mustSet(t, c.nodes[l], "m/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	// Range 0's log is compacted past the split on every node that could
	// lead it: the stopped node can only catch up from a snapshot.
	waitFor(t, 20*time.Second, "range 0's log compacted past the split", func() error {
		for i, s := range c.nodes {
			if s == nil {
				continue
			}
			first, err := s.group.FirstLogIndex()
			if err != nil {
				return err
			}
			if first <= stoppedAt+10 {
				return fmt.Errorf("node %d: first log index %d", i, first)
			}
		}
		return nil
	})
	c.start(f)
	want := fmt.Sprintf(`"": n1,n2,n3; "m/": n1,n2,n3`)
	waitReplicas(t, c.nodes[f], want)
	waitFor(t, 20*time.Second, "the new range's keys on the node that missed the split", func() error {
		got, err := c.nodes[f].List(ctx(t), "m/", Stale())
		if err != nil {
			return err
		}
		if len(got) != 200 {
			return fmt.Errorf("%d keys under m/", len(got))
		}
		return nil
	})
	rs, err := c.nodes[f].Ranges(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].ID != split.Right.ID {
		t.Fatalf("ranges on the node that missed the split: %+v", rs)
	}
	_ = api.Range{}
}

// sameAsRangeMap compares node s's ranges with its replica of range 0's
// routing copy of the range map.
func sameAsRangeMap(t *testing.T, s *RaftStore) error {
	t.Helper()
	rs, err := s.Ranges(ctx(t))
	if err != nil {
		return err
	}
	copies, err := s.group.FSM().RangeMap()
	if err != nil {
		return err
	}
	if len(copies) != len(rs) {
		return fmt.Errorf("%d ranges, %d in the copy", len(rs), len(copies))
	}
	for _, r := range rs {
		found := false
		for _, d := range copies {
			if d.ID == r.ID {
				found = true
				if d.Start != r.Start || d.End != r.End || d.Generation != r.Generation || len(d.Replicas) != len(r.Replicas) {
					return fmt.Errorf("range %d: %s in the copy, [%q, %q) gen %d with %d replicas here", r.ID, d, r.Start, r.End, r.Generation, len(r.Replicas))
				}
			}
		}
		if !found {
			return fmt.Errorf("range %d is not in the copy", r.ID)
		}
	}
	return nil
}

// A node that holds no replica of a range (here: one that refuses to start
// them) still takes writes for its keys: it routes them by the meta
// range's copy of the range map to the range's leader, and lists the range
// from the copy.
func TestWritesThroughANodeWithoutTheRange(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for _, at := range []string{"m/", "t/"} {
		if _, err := c.nodes[0].SplitRange(ctx(t), at); err != nil {
			t.Fatal(err)
		}
	}
	n4 := c.add()
	c.nodes[n4].node.OnUnknownGroup(func(uint64) bool { return false }) // it never holds ranges but 0
	c.waitVoters(4)
	// (Replaying range 0's log, the new node applies the first split and
	// starts that range from its birth; the second split is in that
	// range's log, so the range from "t/" is one it never holds.)
	waitFor(t, 20*time.Second, "the range map on the new node", func() error {
		rs, err := c.nodes[n4].Ranges(ctx(t))
		if err != nil {
			return err
		}
		if len(rs) != 3 || rs[2].Start != "t/" || !rs[2].FromMeta {
			return fmt.Errorf("ranges %+v", rs)
		}
		return nil
	})
	writeThrough(t, c, n4, "the node without its range", "a/1", "n/1", "z/1")
}

// A node that joined after a split holds a replica of the split's range
// that the range has not taken in yet (here never: its leader does not
// mirror the membership during the test). Its writes for the range's keys
// go to the range's leader by the meta copy; the replica, which hears
// from no leader, would fail them. (CI, under load: "no leader known"
// when the write came before the range's leader had added the node.)
func TestWritesThroughAReplicaItsRangeHasNotTakenIn(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.RangeMembershipInterval = time.Hour })
	if _, err := c.nodes[0].SplitRange(ctx(t), "m/"); err != nil {
		t.Fatal(err)
	}
	n4 := c.add()
	c.waitVoters(4)
	waitFor(t, 20*time.Second, "the new node's replica of the range from m/", func() error {
		rs, err := c.nodes[n4].Ranges(ctx(t))
		if err != nil {
			return err
		}
		if len(rs) != 2 || rs[1].FromMeta {
			return fmt.Errorf("ranges %+v", rs)
		}
		for _, r := range rs[1].Replicas {
			if r.Node == c.nodes[n4].ID() {
				t.Fatalf("the range took the new node in: %+v", rs[1])
			}
		}
		return nil
	})
	writeThrough(t, c, n4, "the new node", "a/1", "n/1")
}

// writeThrough writes each key through node n (what names it in a
// failure), within 10 s each, and reads it back from node 0.
func writeThrough(t *testing.T, c *testCluster, n int, what string, keys ...string) {
	t.Helper()
	value := "via-" + c.nodes[n].ID()
	for _, k := range keys {
		wctx, cancel := context.WithTimeout(ctx(t), 10*time.Second)
		_, err := c.nodes[n].Set(wctx, k, []byte(value))
		cancel()
		if err != nil {
			t.Fatalf("write %s through %s: %v", k, what, err)
		}
		if got := mustGetValue(t, c.nodes[0], k); got != value {
			t.Fatalf("%s = %q", k, got)
		}
	}
}
