package raftstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpd"
	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/fwdstream"
	"github.com/raftkv/raftkv/internal/integrity"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/logstore"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/internal/sessions"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/internal/watch"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/mux"
)

// Sentinel errors, re-exported so embedders need only this package.
var (
	ErrNotFound       = kv.ErrNotFound
	ErrNoLeader       = kv.ErrNoLeader
	ErrUnknownOutcome = kv.ErrUnknownOutcome
	ErrCASMismatch    = kv.ErrCASMismatch
	ErrTxnFailed      = kv.ErrTxnFailed
	ErrInvalid        = kv.ErrInvalid
	ErrTooLarge       = kv.ErrTooLarge
	ErrClosed         = kv.ErrClosed
	// ErrDamaged: the data dir holds damaged files; the error names the
	// file and the problem (docs/OPERATIONS.md, "Damaged data").
	ErrDamaged = integrity.ErrDamaged
)

// RaftStore is one raftkv node.
type RaftStore struct {
	cfg    Config
	id     string
	addr   string
	logger *slog.Logger

	mux       *mux.Mux
	raft      *raft.Raft
	fsm       *fsm.FSM
	logStore  logstore.Store
	logs      raft.LogStore    // the cache in front of logStore
	dirLock   *os.File         // held while the node runs
	disk      *diskguard.Guard // the data dir's free space, and its reserve
	fullDisks fullDisks        // while leading: servers that reported a full disk
	http      *http.Server
	peers     *peerrpc.Client
	// forwards carries this node's forwarded writes to the leader, one
	// stream per leader; forwarded answers the other nodes' streams.
	forwards  *fwdstream.Client
	forwarded *fwdstream.Server
	trans     *heartbeatTransport
	contacts  peerContacts // when each peer last answered this node's AppendEntries
	leaders   *leaderwatch.Watch
	sessions  *sessions.Manager // TTL timers and node health, while leading
	resolver  *acl.Resolver     // tokens to identities; nil when ACLs are off
	pilot     *autopilot.Pilot  // promotes joined non-voters, while leading
	verifier  *verifier
	// followerReads shares one read-index call to the leader among the
	// linearizable reads that arrive together on a follower.
	followerReads rounds
	watch         *watch.Hub // blocking queries on keys
	sessionWatch  *watch.Hub // blocking queries on sessions (one key: "")
	leader        leadership
	metrics       *metrics

	caughtUp atomic.Bool   // applied the leader's commit index once (readiness)
	raftDone chan struct{} // closed once raft has shut down

	ctx         context.Context // cancelled by Close; ends background loops
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	removed     chan struct{} // closed once this node learns it was removed
	removedOnce sync.Once
	closeErr    error
}

// Open starts a node. It returns once the node serves its port; use
// WaitForLeader to wait for the cluster.
func Open(cfg Config) (_ *RaftStore, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("raftstore: data dir: %w", err)
	}
	s := &RaftStore{cfg: cfg}
	if s.dirLock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.dirLock.Close()
		}
	}()
	s.disk, err = diskguard.Open(cfg.DataDir, diskguard.Options{Reserve: cfg.DiskReserve, Headroom: cfg.walSegmentBytes() + 8<<20,
		Keep: memtableFile, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	s.leader.signal = make(chan struct{})
	s.raftDone = make(chan struct{})
	s.removed = make(chan struct{})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var cleanup []func()
	defer func() {
		if err != nil {
			s.cancel()
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("raftstore: listen on %s: %w", cfg.Addr, err)
		}
	}
	muxOpts := mux.Options{Advertise: cfg.Advertise, Logger: cfg.Logger}
	if cfg.TLS != (tlsutil.Files{}) {
		store, err := tlsutil.Load(cfg.TLS)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raftstore: %w", err)
		}
		muxOpts.TLS = &mux.TLS{Store: store, VerifyIncoming: cfg.TLSVerifyIncoming}
	}
	if s.mux, err = mux.New(ln, muxOpts); err != nil {
		ln.Close()
		return nil, err
	}
	cleanup = append(cleanup, func() { s.mux.Close() })
	s.addr = s.mux.Addr().String()
	s.id = cfg.ID
	if s.id == "" {
		s.id = s.addr
	}
	s.logger = cfg.Logger.With("node", s.id)

	s.watch, s.sessionWatch = watch.New(), watch.New()
	feed := changeFeed{keys: s.watch, sessions: s.sessionWatch}
	fsmDir := filepath.Join(cfg.DataDir, "fsm")
	err = unpanic("Badger", func() (err error) {
		s.fsm, err = fsm.Open(fsmDir, fsm.Options{Logger: s.logger, Small: cfg.SmallFootprint, Notify: feed})
		return err
	})
	if err != nil {
		return nil, stateMachineDamage(fsmDir, err)
	}
	if cfg.ACLDefaultPolicy != "" {
		s.resolver = acl.NewResolver(s.fsm, cfg.ACLDefaultPolicy == "allow")
	}
	cleanup = append(cleanup, func() { s.fsm.Close() })

	hclogger := logging.HCLog(s.logger, "raft")
	kind, err := logstore.Choose(cfg.DataDir, logstore.Kind(cfg.RaftLogStore))
	if err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	if err := checkLogFiles(cfg.DataDir, kind); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	globalRaftSink() // before the log store: raft-wal binds its metrics to the sink there is when it opens
	err = unpanic("the raft log", func() error {
		store, err := logstore.Open(cfg.DataDir, kind, hclogger.Named("log"), logstore.Options{SegmentBytes: cfg.RaftWALSegmentBytes})
		if err == nil {
			s.logStore = spaceStore{Store: store, guard: s.disk, closing: s.ctx.Done()}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	cleanup = append(cleanup, func() { s.logStore.Close() })
	if err := checkLogFitsState(cfg.DataDir, kind, s.logStore, s.fsm.AppliedIndex()); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	if s.logs, err = raft.NewLogCache(512, s.logStore); err != nil {
		return nil, fmt.Errorf("raftstore: log cache: %w", err)
	}
	removeUnfinishedSnapshots(cfg.DataDir, s.logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, integrity.Retain, hclogger)
	if err != nil {
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	var watch atomic.Pointer[leaderwatch.Watch] // set once raft exists
	trans := &heartbeatTransport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  s.mux.RaftLayer(),
			MaxPool: 8,
			Timeout: 10 * time.Second,
			Logger:  hclogger,
		}),
		heard: func(id string, term uint64) {
			if w := watch.Load(); w != nil {
				w.Heard(id, term)
			}
		},
		acked: s.contacts.heard,
	}

	s.trans = trans
	notify := make(chan bool, 16)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.id)
	rc.Logger = hclogger
	rc.NotifyCh = notify
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true
	rc.NoLegacyTelemetry = true // per-peer metrics as a peer_id label, not in the name
	rc.MaxAppendEntries = 256
	rc.CommitTimeout = 5 * time.Millisecond

	hasState, err := raft.HasExistingState(s.logs, s.logStore, snaps)
	if err != nil {
		return nil, fmt.Errorf("raftstore: inspect raft state: %w", err)
	}
	if !hasState && s.fsm.AppliedIndex() > 0 {
		// The raft log is gone but the FSM is not (an operator wiped raft.db
		// to rejoin): the new history's entries must not be skipped.
		s.logger.Warn("no raft state but an FSM at an older index: dropping the FSM", "applied", s.fsm.AppliedIndex())
		if err := s.fsm.Reset(); err != nil {
			return nil, err
		}
	}
	if cfg.Recover {
		if err := s.recoverFromPeersJSON(rc, snaps, trans, hasState); err != nil {
			trans.Close()
			return nil, err
		}
	}
	s.fsm.SetResuming(true)
	err = unpanic("raft", func() (err error) {
		s.raft, err = raft.NewRaft(rc, s.fsm, s.logs, s.logStore, snaps, trans)
		return err
	})
	s.fsm.SetResuming(false)
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}
	cleanup = append(cleanup, func() { s.raft.Shutdown().Error(); close(s.raftDone) })
	if cfg.Bootstrap && !hasState {
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{Suffrage: raft.Voter, ID: raft.ServerID(s.id), Address: raft.ServerAddress(s.addr)},
		}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("raftstore: bootstrap: %w", err)
		}
	}

	s.peers = peerrpc.NewClient(s.mux.DialContext, s.peerSecret)
	s.forwards = fwdstream.NewClient(s.mux.DialForward, s.peerSecret)
	s.forwarded = fwdstream.NewServer((*rpcNode)(s), cfg.ApplyTimeout)
	s.metrics = newMetrics(s.watch.Len)
	s.metrics.registry.MustRegister(newRaftGauges(s))
	s.sessions = sessions.New(sessions.RealClock{}, s.invalidateSession)
	s.pilot = autopilot.New(s.raft, (*pilotNode)(s), autopilot.Config{
		StabilizationTime:    cfg.ServerStabilizationTime,
		LastContactThreshold: cfg.HeartbeatTimeout,
		FailAfter:            kv.NodeFailAfter,
		Interval:             cfg.autopilotInterval(),
		Logger:               logging.HCLog(s.logger, "autopilot"),
	})
	s.leaders = leaderwatch.New(s.raft, s.id, s.addr, time.Now, s.metrics.failover.Observe)
	watch.Store(s.leaders)
	slowAfter := cfg.HeartbeatTimeout / 10 // raft's heartbeat interval
	s.verifier = newVerifier(s.raft, s.id, s.peers, s.leaders, s.peerTimeout(), slowAfter)
	s.verifier.rounds.observe = s.metrics.confirmLatency.Observe
	s.followerReads.slowAfter = slowAfter
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	s.spawn(func() {
		if err := s.http.Serve(s.mux.HTTPListener()); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.logger.Error("http server stopped", "err", err)
		}
	})
	s.spawn(func() { _ = s.forwarded.Serve(s.mux.ForwardListener()) })
	s.spawn(func() { s.watchLeadership(notify) })
	s.spawn(func() { leaderwatch.Run(s.raft, s.leaders, cfg.HeartbeatTimeout/10, s.raftDone) })
	s.spawn(s.watchPeers)
	s.disk.OnChange(s.diskChanged)
	s.spawn(func() { s.disk.Run(100*time.Millisecond, s.ctx.Done()) })
	s.spawn(s.watchReadiness)
	s.spawn(s.watchRemoval)
	if len(cfg.Join) > 0 {
		s.spawn(s.joinLoop)
	}
	s.logger.Info("node started", "addr", s.addr, "raft_log_store", kind, "data_dir", cfg.DataDir, "existing_state", hasState, "applied", s.fsm.AppliedIndex())
	return s, nil
}

// routes splits node-to-node calls from the public API by prefix (not with
// a ServeMux, which would answer unclean key paths like "a//b" with a 301
// that clients follow as a GET).
func (s *RaftStore) routes() http.Handler {
	rpc := peerrpc.Handler((*rpcNode)(s), s.cfg.ApplyTimeout, s.peerTimeout())
	api := httpd.New(httpd.Stores{KV: s, Sessions: s, Snapshots: s, ACL: s, Cluster: s, Node: s}, httpd.Options{
		MaxValueBytes: s.cfg.MaxValueBytes,
		Registry:      s.metrics.registry,
		Logger:        s.logger,
		EnablePprof:   s.cfg.EnablePprof,
		DisableUI:     s.cfg.DisableUI,
		LeaderHold:    s.cfg.LeaderHold,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, peerrpc.Prefix) {
			if !s.peerAuthorized(r) {
				peerrpc.Refuse(w, "node-to-node endpoints are for members only")
				return
			}
			rpc.ServeHTTP(w, r)
			return
		}
		if fp := s.mux.FailpointHandler(); fp != nil && strings.HasPrefix(r.URL.Path, "/debug/failpoints/") {
			fp.ServeHTTP(w, r) // only in binaries built with -tags failpoints
			return
		}
		api.ServeHTTP(w, r)
	})
}

// changeFeed routes the FSM's change notifications to the watch hubs.
type changeFeed struct{ keys, sessions *watch.Hub }

func (c changeFeed) KeysChanged(keys []string) { c.keys.KeysChanged(keys) }
func (c changeFeed) SessionsChanged()          { c.sessions.KeysChanged([]string{""}) }
func (c changeFeed) AllChanged()               { c.keys.AllChanged(); c.sessions.AllChanged() }

func (s *RaftStore) spawn(fn func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); fn() }()
}

// ID is the node's raft server ID.
func (s *RaftStore) ID() string { return s.id }

// Addr is the node's advertised address (raft and HTTP).
func (s *RaftStore) Addr() string { return s.addr }

// Close shuts the node down. A leader hands leadership to another voter
// first, so the cluster does not wait out an election timeout.
func (s *RaftStore) Close() error { return s.shutdown(true) }

// Kill stops the node the way a crash would look to the rest of the
// cluster: no leadership hand-over, so the others must detect the loss and
// elect. The data dir stays consistent (for demos and failure tests).
func (s *RaftStore) Kill() error { return s.shutdown(false) }

func (s *RaftStore) shutdown(handOver bool) error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.sessions.Step() // no invalidation may start while the node goes away
		s.pilot.Stop()
		if handOver && s.raft.State() == raft.Leader && s.voterCount() > 1 {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.logger.Warn("leadership transfer before shutdown failed", "err", err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := s.http.Shutdown(ctx); err != nil {
			s.http.Close()
		}
		cancel()
		s.forwarded.Close()
		s.forwards.Close()
		var errs []error
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		// Shutdown closes the transport's listener but not its pooled
		// outgoing connections: close them, so that the peers' handlers
		// reading them end (and no file descriptor is left open).
		s.trans.CloseStreams()
		close(s.raftDone)
		s.pilot.Stop() // in case leadership came back while raft shut down
		s.leaders.Stop()
		s.sessions.Close()
		if err := s.mux.Close(); err != nil {
			errs = append(errs, err)
		}
		s.wg.Wait()
		s.peers.Close()
		if err := s.fsm.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := s.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
		s.dirLock.Close()
		s.closeErr = errors.Join(errs...)
		s.logger.Info("node stopped")
	})
	return s.closeErr
}

func (s *RaftStore) voterCount() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// Stats exposes raft's own counters (for debugging and the example).
func (s *RaftStore) Stats() map[string]string { return s.raft.Stats() }

// fromPeer: the request came over TLS with a certificate signed by the CA
// that is a node's (it may serve, not only a client's): only members call
// the node-to-node endpoints.
func fromPeer(state *tls.ConnectionState) bool {
	if state == nil || len(state.VerifiedChains) == 0 {
		return false
	}
	for _, u := range state.PeerCertificates[0].ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			return true
		}
	}
	return false
}

// namesMember: the request's certificate names the advertise host of a
// server in the configuration, as the dialling side checks for the host it
// dials. A node certificate made for another host is not a member's.
func (s *RaftStore) namesMember(state *tls.ConnectionState) bool {
	cert := state.PeerCertificates[0]
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		host, _, err := net.SplitHostPort(string(srv.Address))
		if err == nil && cert.VerifyHostname(host) == nil {
			return true
		}
	}
	return false
}

// SessionTTLMin is the shortest session TTL this node accepts.
func (s *RaftStore) SessionTTLMin() time.Duration { return s.cfg.SessionTTLMin }
