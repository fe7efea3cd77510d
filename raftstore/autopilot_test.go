package raftstore

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Joins add non-voters; an address where nothing answers is never promoted,
// so any number of bogus joins leaves the cluster its leader and its writes
// (they once left a 3-node cluster with 6 voters, 3 alive, and no leader).
func TestBogusJoinsCannotCostTheMajority(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.nodes[c.leader()]
	f := c.nodes[c.followers()[0]]
	var addrs []string
	var lns []net.Listener
	for range 3 { // all three open at once: three distinct ports
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close() // nothing listens there any more
	}
	for i, addr := range addrs {
		if err := f.Join(ctx(t), fmt.Sprintf("bogus%d", i+1), addr); err != nil {
			t.Fatalf("join of bogus%d: %v", i+1, err)
		}
	}
	// Long enough for autopilot to have promoted anything it would.
	time.Sleep(time.Second) // the fault's duration, not synchronisation
	cfg, err := l.Configuration(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, srv := range cfg.Servers {
		if srv.Voter {
			voters++
		}
	}
	if len(cfg.Servers) != 6 || voters != 3 {
		t.Fatalf("after three bogus joins: %d servers, %d voters: %+v", len(cfg.Servers), voters, cfg.Servers)
	}
	// Losing a real voter still leaves a majority of the three voters.
	c.stop(c.followers()[0])
	for i := range 20 {
		if _, err := c.nodes[c.leader()].Set(ctx(t), fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatalf("write %d with bogus members and a voter down: %v", i, err)
		}
	}
	var h kv.AutopilotHealth
	waitFor(t, 10*time.Second, "autopilot to see the voter down", func() error {
		var err error
		if h, err = c.nodes[c.leader()].group.Membership().AutopilotHealth(ctx(t)); err != nil {
			return err
		}
		if h.Healthy || h.FailureTolerance != 0 || len(h.Servers) != 6 {
			return fmt.Errorf("%+v", h)
		}
		return nil
	})
	for _, s := range h.Servers {
		bogus := len(s.ID) > 5 && s.ID[:5] == "bogus"
		if bogus && (s.Healthy || s.Voter) {
			t.Fatalf("a bogus member reported healthy or voter: %+v", s)
		}
	}
	// Removing the bogus members works from any node.
	for i := range 3 {
		if err := c.nodes[c.leader()].Remove(ctx(t), fmt.Sprintf("bogus%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
}

// A joined node is a non-voter until it has been healthy for the
// stabilization time, then a voter; the health report says so from any node.
func TestJoinedNodeIsPromotedOnceStable(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.ServerStabilizationTime = 2 * time.Second })
	c.dirs = append(c.dirs, t.TempDir())
	c.addrs = append(c.addrs, "127.0.0.1:0")
	c.nodes = append(c.nodes, nil)
	c.start(1)
	joined := time.Now()
	n := c.nodes[1]
	waitFor(t, 10*time.Second, "the join", func() error {
		cfg, err := c.nodes[0].Configuration(ctx(t))
		if err != nil || len(cfg.Servers) != 2 {
			return fmt.Errorf("%+v %v", cfg, err)
		}
		if cfg.Servers[1].Voter && time.Since(joined) < 2*time.Second {
			t.Fatalf("promoted %s after joining, before the stabilization time: %+v", time.Since(joined), cfg)
		}
		return nil
	})
	waitFor(t, 20*time.Second, "the promotion", func() error {
		h, err := n.group.Membership().AutopilotHealth(context.Background())
		if err != nil {
			return err
		}
		if len(h.Servers) != 2 {
			return fmt.Errorf("%d servers", len(h.Servers))
		}
		for _, s := range h.Servers {
			if !s.Voter || !s.Healthy {
				return fmt.Errorf("%+v", s)
			}
			// Each server's own commit and applied indexes ride along.
			if s.CommitIndex == 0 || s.AppliedIndex == 0 || s.AppliedIndex > s.CommitIndex || s.CommitIndex > s.LastIndex {
				return fmt.Errorf("indexes of %s: %+v", s.ID, s)
			}
		}
		if !h.Healthy || h.FailureTolerance != 0 {
			return fmt.Errorf("%+v", h)
		}
		return nil
	})
	if d := time.Since(joined); d < 2*time.Second {
		t.Fatalf("promoted after %s, before the stabilization time", d)
	}
}

// A read replica stays a non-voter after the stabilization time, serves
// linearizable reads, and keeps that across a change of leader (the mark is
// replicated state); joining it again as a voter promotes it.
func TestReadReplica(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.dirs = append(c.dirs, t.TempDir())
	c.addrs = append(c.addrs, "127.0.0.1:0")
	c.nodes = append(c.nodes, nil)
	c.tune = func(cfg *Config) {
		if cfg.ID == "n4" {
			cfg.ReadReplica = true
		}
	}
	c.start(3)
	replica := c.nodes[3]
	waitFor(t, 10*time.Second, "the replica to join and catch up", func() error {
		if !replica.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	if _, err := c.nodes[c.leader()].Set(ctx(t), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if e, err := replica.Get(ctx(t), "k"); err != nil || string(e.Value) != "v" {
		t.Fatalf("linearizable read on the replica: %+v %v", e, err)
	}
	voter := func() bool {
		cfg, err := c.nodes[c.leader()].Configuration(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range cfg.Servers {
			if s.ID == "n4" {
				return s.Voter
			}
		}
		t.Fatal("n4 is not a member")
		return false
	}
	time.Sleep(time.Second) // five stabilization times: autopilot had every chance to promote it
	if voter() {
		t.Fatal("a read replica was promoted")
	}
	if err := c.nodes[c.leader()].TransferLeadership(ctx(t), ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the new leader's autopilot runs meanwhile
	if voter() {
		t.Fatal("a new leader promoted the read replica")
	}
	if err := replica.Join(ctx(t), "n4", replica.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n4 promoted after a voter's join", func() error {
		if !voter() {
			return fmt.Errorf("still a non-voter")
		}
		return nil
	})
}
