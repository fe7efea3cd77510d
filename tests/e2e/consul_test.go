package e2e

import (
	"fmt"
	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
	"sort"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

func client(t testing.TB, addr string) *consul.Client {
	t.Helper()
	c, err := consul.NewClient(&consul.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leaderAndFollowers splits the cluster by what the Consul client reports.
func leaderAndFollowers(c *proccluster.Cluster) (leader *proccluster.Proc, followers []*proccluster.Proc) {
	c.TB.Helper()
	var addr string
	testsupport.WaitFor(c.TB, 20*time.Second, "a leader", func() error {
		err := fmt.Errorf("no node running")
		for _, p := range c.Procs {
			if p.Cmd == nil {
				continue
			}
			addr, err = client(c.TB, p.Addr).Status().Leader()
			if err == nil && addr == "" {
				err = fmt.Errorf("%s knows no leader yet", p.ID)
			}
			if err == nil {
				return nil
			}
		}
		return err
	})
	for _, p := range c.Procs {
		if p.Cmd == nil {
			continue
		}
		if p.Addr == addr {
			leader = p
		} else {
			followers = append(followers, p)
		}
	}
	if leader == nil {
		c.TB.Fatalf("leader %s is not one of ours", addr)
	}
	return leader, followers
}

func TestConsulClientAgainstThreeNodes(t *testing.T) {
	c := startCluster(t, 3)
	leader, followers := leaderAndFollowers(c)
	f := client(t, followers[0].Addr)

	// Put through a follower, Get from every node (linearizable by default).
	if _, err := f.KV().Put(&consul.KVPair{Key: "app/config", Value: []byte("v1"), Flags: 7}, nil); err != nil {
		t.Fatal(err)
	}
	var modify uint64
	for _, p := range c.Procs {
		pair, meta, err := client(t, p.Addr).KV().Get("app/config", nil)
		if err != nil {
			t.Fatalf("get on %s: %v", p.ID, err)
		}
		if pair == nil || string(pair.Value) != "v1" || pair.Flags != 7 {
			t.Fatalf("get on %s: %+v", p.ID, pair)
		}
		if meta.LastIndex != pair.ModifyIndex || !meta.KnownLeader {
			t.Fatalf("meta on %s: %+v (ModifyIndex %d)", p.ID, meta, pair.ModifyIndex)
		}
		modify = pair.ModifyIndex
	}
	// Stale reads work too, and a missing key is nil, not an error.
	if pair, _, err := f.KV().Get("nope", &consul.QueryOptions{AllowStale: true}); err != nil || pair != nil {
		t.Fatalf("missing key: %+v %v", pair, err)
	}

	// CAS: one wins, one loses.
	ok, _, err := f.KV().CAS(&consul.KVPair{Key: "app/config", Value: []byte("v2"), ModifyIndex: modify}, nil)
	if err != nil || !ok {
		t.Fatalf("cas with the current index: %v %v", ok, err)
	}
	ok, _, err = client(t, followers[1].Addr).KV().CAS(&consul.KVPair{Key: "app/config", Value: []byte("v3"), ModifyIndex: modify}, nil)
	if err != nil || ok {
		t.Fatalf("cas with a stale index: %v %v", ok, err)
	}

	// List and Keys with a separator.
	for _, k := range []string{"app/db/host", "app/db/port", "app/name"} {
		if _, err := client(t, leader.Addr).KV().Put(&consul.KVPair{Key: k, Value: []byte(k)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pairs, _, err := f.KV().List("app/", nil)
	if err != nil || len(pairs) != 4 {
		t.Fatalf("list: %d pairs, %v", len(pairs), err)
	}
	if !sort.SliceIsSorted(pairs, func(i, j int) bool { return pairs[i].Key < pairs[j].Key }) {
		t.Fatal("list is not sorted by key")
	}
	keys, _, err := f.KV().Keys("app/", "/", nil)
	if err != nil || fmt.Sprint(keys) != "[app/config app/db/ app/name]" {
		t.Fatalf("keys: %v %v", keys, err)
	}

	// A transaction, atomically.
	txnOK, resp, _, err := f.KV().Txn(consul.KVTxnOps{
		{Verb: consul.KVSet, Key: "txn/a", Value: []byte("1")},
		{Verb: consul.KVCheckNotExists, Key: "app/config"},
	}, nil)
	if err != nil || txnOK || len(resp.Errors) != 1 {
		t.Fatalf("failing txn: ok=%v resp=%+v err=%v", txnOK, resp, err)
	}
	if pair, _, _ := f.KV().Get("txn/a", nil); pair != nil {
		t.Fatal("failed txn left a write behind")
	}

	// DeleteTree.
	if _, err := f.KV().DeleteTree("app/db/", nil); err != nil {
		t.Fatal(err)
	}
	keys, _, _ = client(t, leader.Addr).KV().Keys("app/", "", nil)
	if fmt.Sprint(keys) != "[app/config app/name]" {
		t.Fatalf("after delete tree: %v", keys)
	}

	// Cluster status through the Consul client.
	for _, p := range c.Procs {
		l, err := client(t, p.Addr).Status().Leader()
		if err != nil || l != leader.Addr {
			t.Fatalf("leader seen by %s: %q %v", p.ID, l, err)
		}
	}
	cfg, err := f.Operator().RaftGetConfiguration(nil)
	if err != nil || len(cfg.Servers) != 3 || cfg.Index == 0 {
		t.Fatalf("raft configuration: %+v %v", cfg, err)
	}
	leaders := 0
	for _, s := range cfg.Servers {
		if s.Leader {
			leaders++
			if s.Address != leader.Addr {
				t.Fatalf("configuration names %s as leader, status says %s", s.Address, leader.Addr)
			}
		}
		if !s.Voter {
			t.Fatalf("%s is not a voter", s.ID)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders in the configuration", leaders)
	}
	// consul/api's autopilot health, through a follower.
	testsupport.WaitFor(t, 10*time.Second, "a healthy autopilot report", func() error {
		h, err := f.Operator().AutopilotServerHealth(nil)
		if err != nil {
			return err
		}
		if !h.Healthy || h.FailureTolerance != 1 || len(h.Servers) != 3 {
			return fmt.Errorf("%+v", h)
		}
		for _, s := range h.Servers {
			if !s.Healthy || !s.Voter || s.LastContact == nil || s.StableSince.IsZero() {
				return fmt.Errorf("server %+v", s)
			}
		}
		return nil
	})
	peers, err := f.Status().Peers()
	if err != nil || len(peers) != 3 {
		t.Fatalf("peers: %v %v", peers, err)
	}
}

func TestGracefulShutdownAndRestart(t *testing.T) {
	c := startCluster(t, 3)
	leader, followers := leaderAndFollowers(c)
	if _, err := client(t, followers[0].Addr).KV().Put(&consul.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	// SIGTERM on the leader: exit 0 after handing leadership over.
	var li int
	for i, p := range c.Procs {
		if p == leader {
			li = i
		}
	}
	if err := c.Stop(li); err != nil {
		t.Fatalf("leader exit: %v", err)
	}
	newLeader, _ := leaderAndFollowers(c)
	if newLeader == leader {
		t.Fatal("leadership did not move")
	}
	// Restart with the same command line (-join again): a no-op rejoin.
	c.StartProc(li)
	c.WaitReady(30 * time.Second)
	pair, _, err := client(t, leader.Addr).KV().Get("k", nil)
	if err != nil || pair == nil || string(pair.Value) != "v" {
		t.Fatalf("after restart: %+v %v", pair, err)
	}
	cfg, err := client(t, leader.Addr).Operator().RaftGetConfiguration(nil)
	if err != nil || len(cfg.Servers) != 3 {
		t.Fatalf("configuration after restart: %+v %v", cfg, err)
	}

	// The whole cluster stopped and started again with the same command
	// lines (n1 still says -bootstrap, the others -join): data intact.
	for i := range c.Procs {
		if err := c.Stop(i); err != nil {
			t.Fatalf("stop %s: %v", c.Procs[i].ID, err)
		}
	}
	for i := range c.Procs {
		c.StartProc(i)
	}
	c.WaitReady(30 * time.Second)
	for _, p := range c.Procs {
		pair, _, err := client(t, p.Addr).KV().Get("k", nil)
		if err != nil || pair == nil || string(pair.Value) != "v" {
			t.Fatalf("%s after full restart: %+v %v", p.ID, pair, err)
		}
	}
	if _, err := client(t, c.Procs[2].Addr).KV().Put(&consul.KVPair{Key: "k2", Value: []byte("v2")}, nil); err != nil {
		t.Fatalf("write after full restart: %v", err)
	}
}
