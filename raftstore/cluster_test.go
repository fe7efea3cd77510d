package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/kv"
)

// testCluster runs nodes in-process on 127.0.0.1 with fast raft timeouts.
type testCluster struct {
	t     *testing.T
	nodes []*RaftStore
	dirs  []string
	addrs []string
	tune  func(*Config)
}

func testLogger() *slog.Logger {
	if os.Getenv("RAFTKV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (c *testCluster) config(i int) Config {
	cfg := Config{
		ID:                 "n" + strconv.Itoa(i+1),
		Addr:               c.addrs[i],
		DataDir:            c.dirs[i],
		Bootstrap:          i == 0,
		SmallFootprint:     true,
		Logger:             testLogger().With("test", c.t.Name()),
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		ApplyTimeout:       10 * time.Second,
		// Joined nodes become voters as soon as autopilot sees them healthy.
		ServerStabilizationTime: 200 * time.Millisecond,
	}
	if i > 0 {
		cfg.Join = []string{c.addrs[0]}
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

func newTestCluster(t *testing.T, n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nodes: make([]*RaftStore, n), dirs: make([]string, n), addrs: make([]string, n), tune: tune}
	for i := range n {
		c.dirs[i] = t.TempDir()
		c.addrs[i] = "127.0.0.1:0"
		c.start(i)
		c.addrs[i] = c.nodes[i].Addr() // restarts reuse the port
	}
	t.Cleanup(c.closeAll)
	c.waitVoters(n)
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	s, err := Open(c.config(i))
	if err != nil {
		c.t.Fatalf("open node %d: %v", i, err)
	}
	c.nodes[i] = s
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close node %d: %v", i, err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) closeAll() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// killAllBut kills (as SIGKILL would) every node but keep.
func (c *testCluster) killAllBut(keep int) {
	c.t.Helper()
	for i, n := range c.nodes {
		if i != keep && n != nil {
			if err := n.Kill(); err != nil {
				c.t.Fatal(err)
			}
			c.nodes[i] = nil
		}
	}
}

// waitStepDown waits until node i, cut off from the others, no longer leads.
func (c *testCluster) waitStepDown(i int) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, "the leader to step down", func() error {
		if c.nodes[i].group.IsLeader() {
			return errors.New("still leading")
		}
		return nil
	})
}

// followerWith writes key on the leader and returns a follower that has
// applied it, and the write's index.
func (c *testCluster) followerWith(key, value string) (f int, idx uint64) {
	c.t.Helper()
	idx = mustSet(c.t, c.nodes[c.leader()], key, value)
	f = c.followers()[0]
	waitFor(c.t, 10*time.Second, "the follower to apply the write", func() error {
		if c.nodes[f].group.AppliedIndex() < idx {
			return errors.New("behind")
		}
		return nil
	})
	return f, idx
}

// blockingGet starts a blocking read of key on node i, waiting for an index
// past idx (for a minute); its error arrives on the channel.
func (c *testCluster) blockingGet(ctx context.Context, i int, key string, idx uint64, stale bool) <-chan error {
	done := make(chan error, 1)
	n := c.nodes[i]
	go func() {
		_, err := n.Read(ctx, kv.Query{Kind: kv.ReadGet, Key: key, MinIndex: idx, Wait: time.Minute, Stale: stale})
		done <- err
	}()
	return done
}

// waitWatching waits until node i has at least n blocking queries waiting.
func (c *testCluster) waitWatching(i, n int) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, "the queries to block", func() error {
		if got := c.nodes[i].group.BlockingQueries(); got < n {
			return fmt.Errorf("%d watching", got)
		}
		return nil
	})
}

var waitFor = testsupport.WaitFor

func (c *testCluster) waitVoters(n int) {
	c.t.Helper()
	waitFor(c.t, 20*time.Second, fmt.Sprintf("%d ready voters", n), func() error {
		for i, s := range c.nodes {
			if s == nil {
				continue
			}
			cfg, err := s.Configuration(context.Background())
			if err != nil {
				return err
			}
			if len(cfg.Servers) != n {
				return fmt.Errorf("node %d sees %d servers", i, len(cfg.Servers))
			}
			for _, srv := range cfg.Servers {
				if !srv.Voter {
					return fmt.Errorf("node %d sees %s as a non-voter", i, srv.ID)
				}
			}
			if !s.Ready() {
				return fmt.Errorf("node %d not ready", i)
			}
		}
		return nil
	})
}

// leader returns the index of the node that is leader, waiting for one.
func (c *testCluster) leader() int {
	c.t.Helper()
	idx := -1
	waitFor(c.t, 20*time.Second, "a leader", func() error {
		for i, s := range c.nodes {
			if s != nil && s.group.IsLeader() {
				idx = i
				return nil
			}
		}
		return errors.New("no leader among running nodes")
	})
	return idx
}

func (c *testCluster) followers() []int {
	l := c.leader()
	var out []int
	for i, s := range c.nodes {
		if s != nil && i != l {
			out = append(out, i)
		}
	}
	return out
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustSet(t *testing.T, s *RaftStore, key, value string) uint64 {
	t.Helper()
	idx, err := s.Set(ctx(t), key, []byte(value))
	if err != nil {
		t.Fatalf("set %q on %s: %v", key, s.ID(), err)
	}
	return idx
}

func mustGetValue(t *testing.T, s *RaftStore, key string, opts ...ReadOption) string {
	t.Helper()
	e, err := s.Get(ctx(t), key, opts...)
	if err != nil {
		t.Fatalf("get %q on %s: %v", key, s.ID(), err)
	}
	return string(e.Value)
}

func TestWriteThroughFollowerReadOnOtherFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()
	// Linearizable: a read on another follower right after the write's
	// acknowledgement must see it, with no waiting in between.
	for i := range 50 {
		v := strconv.Itoa(i)
		mustSet(t, c.nodes[f[0]], "k", v)
		if got := mustGetValue(t, c.nodes[f[1]], "k"); got != v {
			t.Fatalf("read %d on follower %s: got %q, want %q", i, c.nodes[f[1]].ID(), got, v)
		}
	}
	// The Go API's other verbs, through a follower.
	s := c.nodes[f[1]]
	idx, err := s.CompareAndSet(ctx(t), "cas", []byte("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompareAndSet(ctx(t), "cas", []byte("b"), idx+1000); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("stale CAS: err=%v, want ErrCASMismatch", err)
	}
	if _, err := s.CompareAndSet(ctx(t), "cas", []byte("b"), idx); err != nil {
		t.Fatalf("CAS with the current index: %v", err)
	}
	mustSet(t, s, "dir/a", "1")
	mustSet(t, s, "dir/sub/b", "2")
	keys, err := s.Keys(ctx(t), "dir/", "/")
	if err != nil || fmt.Sprint(keys) != "[dir/a dir/sub/]" {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	if err := s.DeleteTree(ctx(t), "dir/"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx(t), "cas"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"dir/a", "cas"} {
		if _, err := c.nodes[f[0]].Get(ctx(t), k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get %q after delete: %v", k, err)
		}
	}
	// Every forwarded write went over the forwarding stream, none by HTTP.
	for _, i := range f {
		n := c.nodes[i]
		streamed := forwardedCount(t, n, "apply")
		byHTTP := forwardedCount(t, n, "apply_http")
		if byHTTP != 0 || streamed == 0 {
			t.Fatalf("%s forwarded %v writes, %v of them by HTTP", n.ID(), streamed, byHTTP)
		}
	}
	// Joining an existing member again is a no-op.
	before, _ := s.Configuration(ctx(t))
	if err := s.Join(ctx(t), c.nodes[f[0]].ID(), c.nodes[f[0]].Addr()); err != nil {
		t.Fatalf("re-join: %v", err)
	}
	after, _ := s.Configuration(ctx(t))
	if before.Index < 3 { // bootstrap plus two joins
		t.Fatalf("configuration index %d, want the index of the last membership change", before.Index)
	}
	if after.Index != before.Index {
		t.Fatalf("re-join changed the configuration (index %d → %d)", before.Index, after.Index)
	}
}

func TestLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	for i := range 20 {
		mustSet(t, c.nodes[old], "before/"+strconv.Itoa(i), "v")
	}
	if err := c.nodes[old].Kill(); err != nil { // a crash: no leadership hand-over
		t.Fatal(err)
	}
	c.nodes[old] = nil
	newLeader := c.leader()
	if newLeader == old {
		t.Fatal("stopped node is still leader")
	}
	// Regression: a follower read right after the election used to fail
	// with "not the leader" while the new leader's notification was in flight.
	for _, i := range c.followers() {
		mustGetValue(t, c.nodes[i], "before/0")
	}
	for _, i := range c.followers() {
		mustSet(t, c.nodes[i], "after", "ok")
	}
	for i := range 20 {
		mustGetValue(t, c.nodes[newLeader], "before/"+strconv.Itoa(i))
	}
	// Every survivor measured the failover: from its last heartbeat of the
	// old leader to its first linearizable read under the new one.
	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		if h := histogram(t, n, "raftkv_failover_seconds"); h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 {
			t.Fatalf("node %d: failover histogram count %d sum %v, want one positive sample", i, h.GetSampleCount(), h.GetSampleSum())
		}
	}
	// The old leader comes back on its old directory and catches up.
	c.start(old)
	waitFor(t, 20*time.Second, "old leader catching up", func() error {
		e, err := c.nodes[old].Get(context.Background(), "after", Stale())
		if err != nil {
			return err
		}
		if string(e.Value) != "ok" {
			return fmt.Errorf("value %q", e.Value)
		}
		return nil
	})
	if got := mustGetValue(t, c.nodes[old], "after"); got != "ok" {
		t.Fatalf("linearizable read on the returned node: %q", got)
	}
}

func TestRestartNodeCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]
	c.stop(f)
	writer := c.leader()
	for i := range 100 {
		mustSet(t, c.nodes[writer], "k/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	c.start(f)
	// A linearizable read on the restarted node waits for it to catch up.
	if got := mustGetValue(t, c.nodes[f], "k/99"); got != "99" {
		t.Fatalf("restarted node read %q", got)
	}
	waitFor(t, 10*time.Second, "restarted node ready", func() error {
		if !c.nodes[f].Ready() {
			return errors.New("not ready")
		}
		return nil
	})
}

func TestRestartWholeCluster(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	want := map[string]string{}
	for i := range 50 {
		k, v := "k/"+strconv.Itoa(i), "v"+strconv.Itoa(i)
		mustSet(t, c.nodes[l], k, v)
		want[k] = v
	}
	if err := c.nodes[l].Delete(ctx(t), "k/7"); err != nil {
		t.Fatal(err)
	}
	delete(want, "k/7")
	c.closeAll()
	for i := range c.nodes {
		c.start(i)
	}
	c.waitVoters(3)
	for _, s := range c.nodes {
		entries, err := s.List(ctx(t), "k/")
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(want) {
			t.Fatalf("%s has %d keys after restart, want %d", s.ID(), len(entries), len(want))
		}
		for _, e := range entries {
			if want[e.Key] != string(e.Value) {
				t.Fatalf("%s: %s = %q, want %q", s.ID(), e.Key, e.Value, want[e.Key])
			}
		}
	}
	mustSet(t, c.nodes[c.followers()[0]], "after-restart", "ok")
}

func TestLaggingNodeInstallsSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	f := c.followers()[0]
	c.stop(f)
	l := c.leader()
	for i := range 400 {
		mustSet(t, c.nodes[l], "k/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	if err := c.nodes[l].DeleteTree(ctx(t), "k/1"); err != nil { // k/1, k/10.. k/199 gone
		t.Fatal(err)
	}
	// Wait until the leader has compacted past what the stopped node has.
	waitFor(t, 20*time.Second, "leader log compaction", func() error {
		first, err := c.nodes[l].group.FirstLogIndex()
		if err != nil {
			return err
		}
		if first < 200 {
			return fmt.Errorf("leader's first log index is %d", first)
		}
		return nil
	})
	c.start(f)
	waitFor(t, 20*time.Second, "snapshot install on the lagging node", func() error {
		if c.nodes[f].Stats()["last_snapshot_index"] == "0" {
			return errors.New("no snapshot installed yet")
		}
		return nil
	})
	entries, err := c.nodes[f].List(ctx(t), "k/")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 400-111 {
		t.Fatalf("lagging node has %d keys after snapshot install, want %d", len(entries), 400-111)
	}
	if _, err := c.nodes[f].Get(ctx(t), "k/150", Stale()); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("deleted key present after snapshot install: %v", err)
	}
}

// A lone voter has nobody to hand leadership to: it says so at once
// instead of trying for an election timeout.
func TestTransferWithoutAnotherVoter(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	err := c.nodes[0].TransferLeadership(ctx(t), "")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no other voter") {
		t.Fatalf("transfer on a one-voter cluster: %v", err)
	}
}
