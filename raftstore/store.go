package raftstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/aclsys"
	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/httpd"
	"github.com/raftkv/raftkv/internal/node"
	"github.com/raftkv/raftkv/internal/ranges"
	"github.com/raftkv/raftkv/internal/sessions"
	"github.com/raftkv/raftkv/kv"
)

// RaftStore is one raftkv node with its one raft group: the Go API of an
// embedded node. The node (package internal/node) owns the port, TLS and
// the node-to-node protocols; the group (internal/group) the raft log,
// the state machine and the cluster's behaviour.
type RaftStore struct {
	node     *node.Node
	store    *fsm.Store   // the state machines of every range on the node
	group    *group.Group // range 0: the meta range, with sessions and ACLs
	ranges   *ranges.Set  // range 0 and the ranges splits made
	cfg      Config
	sessions *sessions.Service
	acls     *aclsys.System
	disk     *diskguard.Guard
	stop     context.CancelFunc // ends the disk guard's checks
	done     chan struct{}      // closed when they have ended

	closeOnce sync.Once
	closeErr  error
}

// Open starts a node. It returns once the node serves its port; use
// WaitForLeader to wait for the cluster.
func Open(cfg Config) (_ *RaftStore, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	gcfg := cfg.groupConfig(0, cfg.DataDir, nil)
	n, err := node.Open(node.Config{
		ID: cfg.ID, Addr: cfg.Addr, Listener: cfg.Listener, Advertise: cfg.Advertise,
		DataDir: cfg.DataDir, TLS: cfg.TLS.files(), TLSVerifyIncoming: cfg.TLSVerifyIncoming,
		Logger: cfg.Logger, LongCall: cfg.ApplyTimeout, ShortCall: cfg.HeartbeatTimeout,
		MaxCommandBytes: gcfg.MaxCommandBytes(), Groups: []uint64{0},
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	s := &RaftStore{node: n, done: make(chan struct{})}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	s.disk, err = diskguard.Open(cfg.DataDir, diskguard.Options{Reserve: cfg.DiskReserve, Headroom: cfg.walSegmentBytes() + 8<<20,
		Keep: group.MemtableFiles, Logger: n.Logger()})
	if err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	gcfg.Disk = s.disk
	s.cfg = cfg
	if s.store, err = group.OpenStore(cfg.DataDir, n.Logger(), cfg.SmallFootprint); err != nil {
		return nil, err
	}
	gcfg.Store = s.store
	if s.group, err = group.Open(*gcfg, n); err != nil {
		s.store.Close()
		return nil, err
	}
	// The features attach before the group can lead (its first election
	// takes at least an election timeout).
	s.sessions = sessions.Attach(s.group)
	s.acls = aclsys.Attach(s.group, aclsys.Config{DefaultPolicy: cfg.ACLDefaultPolicy, InitialManagement: cfg.ACLInitialManagement})
	if err := n.AddGroup(0, peerCalls{s.group.PeerCalls(), s.sessions}); err != nil {
		s.sessions.Close()
		s.group.Close()
		s.store.Close()
		return nil, err
	}
	n.SetPeerAuth(peerAuth{s.group, s.acls}) // before the group calls its peers
	s.group.Start()
	s.ranges = ranges.New(ranges.Config{Meta: s.group, Start: s.startRange, Failed: n.StartFailed, Dir: cfg.DataDir, Logger: n.Logger(),
		MembershipEvery: cfg.RangeMembershipInterval})
	s.group.Registry().MustRegister(s.ranges) // every range's raft gauges on /metrics
	if err := s.openRanges(); err != nil {
		s.ranges.Close(false)
		s.sessions.Close()
		s.group.Close()
		s.store.Close()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go func() { defer close(s.done); s.disk.Run(100*time.Millisecond, ctx.Done()) }()
	n.Serve(s.api(cfg))
	return s, nil
}

// peerCalls are the node-to-node calls of the group: its own, and the
// renewals its sessions answer.
type peerCalls struct {
	*group.PeerCalls
	sessions *sessions.Service
}

func (p peerCalls) Renew(ctx context.Context, id string) (kv.Session, error) {
	return p.sessions.Renew(ctx, id)
}

// peerAuth is who the node lets in as a peer: the group's members (their
// hosts, with TLS), or whoever has the ACL system's peer secret.
type peerAuth struct {
	*group.Group
	acls *aclsys.System
}

func (p peerAuth) PeerSecretRequired() bool    { return p.acls.PeerSecretRequired() }
func (p peerAuth) PeerSecret() (string, error) { return p.acls.PeerSecret() }

// api is the HTTP API of the node's group.
func (s *RaftStore) api(cfg Config) http.Handler {
	return httpd.New(httpd.Stores{KV: s.ranges, Ranges: s, Sessions: s.sessions, Snapshots: s.ranges, ACL: aclStore{s.acls},
		Cluster: s.group.Membership(), Node: s.group}, httpd.Options{
		MaxValueBytes: cfg.MaxValueBytes,
		Registry:      s.group.Registry(),
		Logger:        s.node.Logger(),
		EnablePprof:   cfg.EnablePprof,
		DisableUI:     cfg.DisableUI,
		LeaderHold:    cfg.LeaderHold,
	})
}

// aclStore is the ACL system as the HTTP API sees it.
type aclStore struct{ *aclsys.System }

func (a aclStore) ACLState(ctx context.Context, stale bool) (httpd.ACLReader, error) {
	st, err := a.System.ACLState(ctx, stale)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// ID is the node's raft server ID.
func (s *RaftStore) ID() string { return s.node.ID() }

// Addr is the node's advertised address (raft and HTTP).
func (s *RaftStore) Addr() string { return s.node.Addr() }

// Close shuts the node down. A leader hands leadership to another voter
// first, so the cluster does not wait out an election timeout.
func (s *RaftStore) Close() error { return s.shutdown(true) }

// Kill stops the node the way a crash would look to the rest of the
// cluster: no leadership hand-over, so the others must detect the loss and
// elect. The data dir stays consistent (for demos and failure tests).
func (s *RaftStore) Kill() error { return s.shutdown(false) }

func (s *RaftStore) shutdown(handOver bool) error {
	s.closeOnce.Do(func() {
		s.sessions.Quiesce() // no invalidation may start while the node goes away
		s.group.StepAside(handOver)
		s.node.StopServing()
		for _, g := range s.ranges.Groups() {
			s.node.RemoveGroup(g.GroupID())
		}
		s.ranges.Close(handOver)
		s.node.RemoveGroup(0)
		err := s.group.Close()
		s.sessions.Close()
		err = errors.Join(err, s.store.Close())
		s.stop()
		<-s.done
		s.closeErr = errors.Join(err, s.node.Close())
		s.node.Logger().Info("node stopped")
	})
	return s.closeErr
}

// Stats exposes raft's own counters (for debugging and the example).
func (s *RaftStore) Stats() map[string]string { return s.group.Stats() }

// Removed is closed once this node has learnt that it was removed from the
// cluster: it will never be a member again under this identity (raftkvd
// exits; started again with -join it joins as a new member).
func (s *RaftStore) Removed() <-chan struct{} { return s.group.Membership().Removed() }

// Ready reports whether the node knows a leader and has caught up with the
// commit index the leader had when this node first reached it.
func (s *RaftStore) Ready() bool { return s.group.Ready() }

// Leader returns the leader's address and ID, empty if none is known.
func (s *RaftStore) Leader() (addr, id string) { return s.group.Leader() }

// WaitForLeader blocks until a leader is known and returns its address.
func (s *RaftStore) WaitForLeader(ctx context.Context) (string, error) {
	return s.group.WaitForLeader(ctx)
}
