package raftstore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/raftkv/raftkv/api"
)

// gathered returns the value of every gauge series in a node's registry,
// keyed by name and labels.
func gathered(t *testing.T, s *RaftStore) map[string]float64 {
	t.Helper()
	mfs, err := s.group.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf("{%s=%s}", l.GetName(), l.GetValue())
			}
			if g := m.GetGauge(); g != nil && mf.GetType() == dto.MetricType_GAUGE {
				out[key] = g.GetValue()
			}
		}
	}
	return out
}

func TestRaftGauges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	if _, err := c.nodes[l].Set(ctx(t), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	f := c.followers()[0]
	waitFor(t, 10*time.Second, "the follower to apply the write", func() error {
		if c.nodes[f].group.AppliedIndex() < c.nodes[l].group.AppliedIndex() {
			return fmt.Errorf("behind")
		}
		return nil
	})
	lg, fg := gathered(t, c.nodes[l]), gathered(t, c.nodes[f])
	if lg["raftkv_is_leader"] != 1 || fg["raftkv_is_leader"] != 0 {
		t.Fatalf("is_leader: leader %v, follower %v", lg["raftkv_is_leader"], fg["raftkv_is_leader"])
	}
	for _, name := range []string{"raftkv_raft_term", "raftkv_raft_last_log_index", "raftkv_raft_commit_index", "raftkv_raft_applied_index"} {
		if lg[name] <= 0 || fg[name] <= 0 {
			t.Fatalf("%s: leader %v, follower %v", name, lg[name], fg[name])
		}
	}
	if lg["raftkv_raft_last_contact_seconds"] != 0 || fg["raftkv_raft_last_contact_seconds"] < 0 {
		t.Fatalf("last contact: leader %v, follower %v", lg["raftkv_raft_last_contact_seconds"], fg["raftkv_raft_last_contact_seconds"])
	}
	// An idle cluster has applied all it committed, on every node: the
	// gauge counts the entries the state machine never sees (the election's
	// no-op, membership), or it would stay below the commit index for ever.
	// Leadership moves once more so that the last entry is such a no-op.
	if err := c.nodes[l].TransferLeadership(ctx(t), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every node to show applied = commit when idle", func() error {
		for _, n := range c.nodes {
			g := gathered(t, n)
			if g["raftkv_raft_applied_index"] != g["raftkv_raft_commit_index"] || g["raftkv_raft_applied_index"] < lg["raftkv_raft_commit_index"]+1 {
				return fmt.Errorf("%s: applied %v, commit %v", n.ID(), g["raftkv_raft_applied_index"], g["raftkv_raft_commit_index"])
			}
		}
		return nil
	})
	// The default log store reports through the same sink as raft.
	if !hasMetric(t, c.nodes[l], "raftkv_raft_wal_log_appends") || !hasMetric(t, c.nodes[l], "raftkv_raft_wal_log_entry_bytes_written") {
		t.Fatal("no raftkv_raft_wal_* metrics")
	}
	peers := 0
	for k := range lg {
		if strings.HasPrefix(k, "raftkv_peer_last_contact_seconds{peer=") {
			peers++
		}
	}
	if peers != 2 {
		t.Fatalf("per-peer series on the leader: %d", peers)
	}
	// No metric carries a node ID in its name.
	mfs, _ := c.nodes[l].group.Registry().Gather()
	for _, mf := range mfs {
		for _, n := range []string{"_n1", "_n2", "_n3"} {
			if strings.HasSuffix(mf.GetName(), n) {
				t.Fatalf("node ID in a metric name: %s", mf.GetName())
			}
		}
	}
}

// hasMetric says whether a node's registry has a series named name.
func hasMetric(t *testing.T, s *RaftStore, name string) bool {
	t.Helper()
	mfs, err := s.group.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

// forwardedCount is raftkv_forwarded_requests_total{kind} of a node.
func forwardedCount(t *testing.T, s *RaftStore, kind string) float64 {
	t.Helper()
	mfs, err := s.group.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "raftkv_forwarded_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// histogram is a node's histogram named name (nil if it has none).
func histogram(t *testing.T, s *RaftStore, name string) *dto.Histogram {
	t.Helper()
	mfs, err := s.group.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	return nil
}

// Every range's raft shows on /metrics, labelled by range: exactly one
// leader per range across the nodes, and every replica applied what it
// committed once idle.
func TestRangeGauges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	split, err := c.nodes[0].SplitRange(ctx(t), "m/")
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, c.nodes[1], "z/1", "v")
	ids := []string{"0", fmt.Sprint(split.Right.ID)}
	waitFor(t, 10*time.Second, "one leader per range, every replica caught up", func() error {
		for _, id := range ids {
			leaders := 0.0
			for _, s := range c.nodes {
				g := gathered(t, s)
				if g["raftkv_ranges{state=held}"] != 2 {
					return fmt.Errorf("%s holds %v ranges", s.ID(), g["raftkv_ranges{state=held}"])
				}
				leaders += g["raftkv_range_is_leader{range="+id+"}"]
				commit, applied := g["raftkv_range_raft_commit_index{range="+id+"}"], g["raftkv_range_raft_applied_index{range="+id+"}"]
				if commit <= 0 || applied < commit {
					return fmt.Errorf("%s, range %s: commit %v, applied %v", s.ID(), id, commit, applied)
				}
			}
			if leaders != 1 {
				return fmt.Errorf("range %s: %v leaders", id, leaders)
			}
		}
		return nil
	})

	// A node's other ranges add to its node-wide metrics: a write of range
	// 1 forwarded to that range's leader counts on the node's /metrics.
	var ranges []api.Range
	waitFor(t, 10*time.Second, "range 1's leader known", func() error {
		if ranges, err = c.nodes[0].Ranges(ctx(t)); err != nil || len(ranges) != 2 || ranges[1].Leader == "" {
			return fmt.Errorf("%+v %v", ranges, err)
		}
		return nil
	})
	for _, s := range c.nodes {
		if s.ID() == ranges[1].Leader {
			continue
		}
		before := forwardedCount(t, s, "apply")
		mustSet(t, s, "z/2", "v")
		if after := forwardedCount(t, s, "apply"); after != before+1 {
			t.Fatalf("%s forwarded a write of range %d: raftkv_forwarded_requests_total{kind=apply} %v → %v", s.ID(), ranges[1].ID, before, after)
		}
		break
	}
}
