package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/kv"
)

// Every test must leave no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var waitFor = testsupport.WaitFor

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testNode is a node carrying some groups, without the HTTP API (members
// are added through the Go API of the groups' leaders).
type testNode struct {
	node   *node.Node
	groups map[uint64]*Group
	disk   *diskguard.Guard
	closed sync.Once
}

func (n *testNode) close() { n.closed.Do(n.shutdown) }

func (n *testNode) shutdown() {
	for _, g := range n.groups {
		g.StepAside(true)
	}
	n.node.StopServing()
	for id, g := range n.groups {
		n.node.RemoveGroup(id)
		g.Close()
	}
	n.node.Close()
}

// groupConfig is a group's configuration with fast raft timeouts.
func groupConfig(t *testing.T, id uint64, dir string, disk *diskguard.Guard) Config {
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("RAFTKV_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Config{
		ID: id, DataDir: dir, MaxValueBytes: kv.DefaultMaxValueBytes,
		Logger: logger.With("test", t.Name()), SmallFootprint: true, Disk: disk,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, SnapshotInterval: time.Minute,
		SnapshotThreshold: 8192, TrailingLogs: 10240, ApplyTimeout: 10 * time.Second,
		SessionTTLMin: kv.DefaultSessionTTLMin, ServerStabilizationTime: 200 * time.Millisecond,
		RaftWALSegmentBytes: 8 << 20,
	}
}

// startNode opens a node on a free port carrying groups, bootstrapping
// those in bootstrap.
func startNode(t *testing.T, name string, groups []uint64, bootstrap map[uint64]bool) *testNode {
	t.Helper()
	dir := t.TempDir()
	n, err := node.Open(node.Config{ID: name, Addr: "127.0.0.1:0", DataDir: dir,
		LongCall: 10 * time.Second, ShortCall: 300 * time.Millisecond, MaxCommandBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	disk, err := diskguard.Open(dir, diskguard.Options{Reserve: 16 << 20})
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	tn := &testNode{node: n, groups: map[uint64]*Group{}, disk: disk}
	for _, id := range groups {
		cfg := groupConfig(t, id, filepath.Join(dir, "group-"+strconv.FormatUint(id, 10)), disk)
		cfg.Bootstrap = bootstrap[id]
		g, err := Open(cfg, n)
		if err == nil {
			err = n.AddGroup(id, withoutSessions{g.PeerCalls()})
		}
		if err != nil {
			tn.close()
			t.Fatal(err)
		}
		tn.groups[id] = g
		g.Start()
	}
	n.SetPeerAuth(openCluster{tn.groups[groups[0]]})
	n.Serve(http.NotFoundHandler())
	t.Cleanup(tn.close)
	return tn
}

// leaderOf waits until one of nodes leads group and returns its index.
func leaderOf(t *testing.T, nodes []*testNode, group uint64) int {
	t.Helper()
	at := -1
	waitFor(t, 20*time.Second, fmt.Sprintf("a leader of group %d", group), func() error {
		for i, n := range nodes {
			if n.groups[group].IsLeader() {
				at = i
				return nil
			}
		}
		return errors.New("none")
	})
	return at
}

// joinAll adds every node to group through its leader, and waits until
// each is a voter.
func joinAll(t *testing.T, nodes []*testNode, group uint64) {
	t.Helper()
	l := nodes[leaderOf(t, nodes, group)].groups[group]
	for _, n := range nodes {
		if err := l.Membership().Join(ctx(t), n.node.ID(), n.node.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "every node a voter", func() error {
		conf, err := l.Membership().Configuration(ctx(t))
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range conf.Servers {
			if s.Voter {
				voters++
			}
		}
		if voters != len(nodes) {
			return fmt.Errorf("%d voters", voters)
		}
		return nil
	})
}

// moveLeadership has nodes[from] hand group's leadership to nodes[to],
// and waits until nodes[to] leads it.
func moveLeadership(t *testing.T, nodes []*testNode, group uint64, from, to int) {
	t.Helper()
	if err := nodes[from].groups[group].Membership().TransferLeadership(ctx(t), nodes[to].node.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("group %d led by %s", group, nodes[to].node.ID()), func() error {
		if !nodes[to].groups[group].IsLeader() {
			return errors.New("not yet")
		}
		return nil
	})
}

// withoutSessions answers a group's peer calls; there are no sessions to
// renew.
type withoutSessions struct{ *PeerCalls }

func (withoutSessions) Renew(context.Context, string) (kv.Session, error) {
	return kv.Session{}, fmt.Errorf("%w: no sessions here", kv.ErrNoLeader)
}

// openCluster lets every peer in (no TLS, no ACLs).
type openCluster struct{ *Group }

func (openCluster) PeerSecretRequired() bool    { return false }
func (openCluster) PeerSecret() (string, error) { return "", nil }
