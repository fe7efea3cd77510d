package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/fwdstream"
	"github.com/raftkv/raftkv/internal/integrity"
	"github.com/raftkv/raftkv/internal/leaderwatch"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/logstore"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/internal/watch"
	"github.com/raftkv/raftkv/kv"
)

// Host is what a group needs of the node it runs on (package node).
type Host interface {
	ID() string
	Addr() string
	RaftLayer(group uint64) (raft.StreamLayer, error)
	Peers(group uint64) *peerrpc.Client
	Forwards() *fwdstream.Client
}

// Group is one raft group on a node.
type Group struct {
	cfg    Config
	id     string // this node's server ID
	addr   string // this node's advertised address
	logger *slog.Logger

	raft      *raft.Raft
	fsm       *fsm.FSM
	snaps     raft.SnapshotStore
	host      Host
	logStore  logstore.Store
	logs      raft.LogStore    // the cache in front of logStore
	disk      *diskguard.Guard // the data dir's free space, and its reserve
	fullDisks fullDisks        // while leading: servers that reported a full disk
	formats   entryFormats     // while leading: the entry forms servers reported reading
	peers     *peerrpc.Client  // node-to-node calls, naming this group
	forwards  *fwdstream.Client
	trans     *heartbeatTransport
	contacts  peerContacts // when each peer last answered this node's AppendEntries
	leaders   *leaderwatch.Watch
	pilot     *autopilot.Pilot // promotes joined non-voters, while leading
	hooks     hookList         // of the features attached (sessions, ACLs, autopilot)
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
	notify      <-chan bool // raft's leadership changes, heard once started
	startOnce   sync.Once
	stepAside   sync.Once
	closeOnce   sync.Once
	removed     chan struct{} // closed once this node learns it was removed
	removedOnce sync.Once
	closeErr    error
}

// Open starts the group on host: its state machine, log and raft, on the
// host's port under the group's ID.
func Open(cfg Config, host Host) (_ *Group, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("group: data dir: %w", err)
	}
	g := &Group{cfg: cfg, id: host.ID(), addr: host.Addr(), disk: cfg.Disk}
	g.logger = cfg.Logger.With("node", g.id)
	if cfg.ID != 0 {
		g.logger = g.logger.With("group", cfg.ID)
	}
	g.leader.signal = make(chan struct{})
	g.raftDone = make(chan struct{})
	g.removed = make(chan struct{})
	g.ctx, g.cancel = context.WithCancel(context.Background())
	var cleanup []func()
	defer func() {
		if err != nil {
			g.cancel()
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	g.watch, g.sessionWatch = watch.New(), watch.New()
	feed := changeFeed{keys: g.watch, sessions: g.sessionWatch}
	fsmDir := filepath.Join(cfg.DataDir, "fsm")
	err = unpanic("Badger", func() (err error) {
		if cfg.Store != nil && cfg.Uninitialized {
			g.fsm, err = cfg.Store.Replica(cfg.ID, feed)
			return err
		}
		if cfg.Store != nil {
			g.fsm, err = cfg.Store.Range(cfg.ID, feed)
			return err
		}
		g.fsm, err = fsm.Open(fsmDir, fsm.Options{Logger: g.logger, Small: cfg.SmallFootprint, Notify: feed})
		return err
	})
	if err != nil {
		return nil, stateMachineDamage(fsmDir, err)
	}
	cleanup = append(cleanup, func() { g.fsm.Close() })

	hclogger := logging.HCLog(g.logger, "raft")
	kind, err := logstore.Choose(cfg.DataDir, logstore.Kind(cfg.RaftLogStore))
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	if err := checkLogFiles(cfg.DataDir, kind); err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	globalRaftSink() // before the log store: raft-wal binds its metrics to the sink there is when it opens
	err = unpanic("the raft log", func() error {
		store, err := logstore.Open(cfg.DataDir, kind, hclogger.Named("log"), logstore.Options{SegmentBytes: cfg.RaftWALSegmentBytes})
		if err == nil {
			g.logStore = spaceStore{Store: store, guard: g.disk, closing: g.ctx.Done()}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	cleanup = append(cleanup, func() { g.logStore.Close() })
	if err := checkLogFitsState(cfg.DataDir, kind, g.logStore, g.fsm.AppliedIndex()); err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	if g.logs, err = raft.NewLogCache(512, g.logStore); err != nil {
		return nil, fmt.Errorf("group: log cache: %w", err)
	}
	removeUnfinishedSnapshots(cfg.DataDir, g.logger)
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, integrity.Retain, hclogger)
	if err != nil {
		return nil, fmt.Errorf("group: snapshot store: %w", err)
	}
	snaps := checkedSnapshots{SnapshotStore: fileSnaps, check: g.fsm.ClaimIncoming, release: g.fsm.ReleaseClaim}
	g.snaps = snaps
	layer, err := host.RaftLayer(cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	var watch atomic.Pointer[leaderwatch.Watch] // set once raft exists
	trans := &heartbeatTransport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  layer,
			MaxPool: 8,
			Timeout: 10 * time.Second,
			Logger:  hclogger,
		}),
		heard: func(id string, term uint64) {
			if w := watch.Load(); w != nil {
				w.Heard(id, term)
			}
		},
		acked: g.contacts.heard,
	}
	g.trans = trans
	notify := make(chan bool, 16)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(g.id)
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

	hasState, err := raft.HasExistingState(g.logs, g.logStore, snaps)
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("group: inspect raft state: %w", err)
	}
	if !hasState && len(cfg.Birth) > 0 {
		if err := writeBirth(fileSnaps, trans, cfg.ID, cfg.Birth); err != nil {
			trans.Close()
			return nil, err
		}
		hasState = true
	}
	if !hasState && g.fsm.AppliedIndex() > 0 && !cfg.Uninitialized {
		// (An empty replica raft traffic started may meanwhile have got
		// the state its parent's split left: that is not a stale FSM.)
		// The raft log is gone but the FSM is not (an operator wiped raft.db
		// to rejoin): the new history's entries must not be skipped.
		g.logger.Warn("no raft state but an FSM at an older index: dropping the FSM", "applied", g.fsm.AppliedIndex())
		if err := g.fsm.Reset(); err != nil {
			trans.Close()
			return nil, err
		}
	}
	if cfg.Recover {
		if err := g.recoverFromPeersJSON(rc, snaps, trans, hasState); err != nil {
			trans.Close()
			return nil, err
		}
	}
	if list, err := fileSnaps.List(); err == nil && len(list) > 0 {
		g.fsm.ResumeFrom(list[0].Index) // the snapshot raft replays
	} else {
		g.fsm.SetResuming(true)
	}
	err = unpanic("raft", func() (err error) {
		g.raft, err = raft.NewRaft(rc, g.fsm, g.logs, g.logStore, snaps, trans)
		return err
	})
	g.fsm.SetResuming(false)
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("group: start raft: %w", err)
	}
	cleanup = append(cleanup, func() { g.raft.Shutdown().Error(); g.trans.CloseStreams(); close(g.raftDone) })
	if cfg.Bootstrap && !hasState {
		f := g.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{Suffrage: raft.Voter, ID: raft.ServerID(g.id), Address: raft.ServerAddress(g.addr)},
		}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("group: bootstrap: %w", err)
		}
	}

	g.peers = host.Peers(cfg.ID)
	g.forwards = host.Forwards()
	g.host = host
	if cfg.MetricsOf != nil {
		g.metrics = cfg.MetricsOf.metrics
	} else {
		g.metrics = newMetrics()
		g.metrics.registry.MustRegister(newRaftGauges(g))
	}
	g.metrics.watchers.Store(g, g.watch.Len)
	cleanup = append(cleanup, func() { g.metrics.watchers.Delete(g) })
	g.pilot = autopilot.New(g.raft, (*pilotNode)(g), autopilot.Config{
		StabilizationTime:    cfg.ServerStabilizationTime,
		LastContactThreshold: cfg.HeartbeatTimeout,
		FailAfter:            kv.NodeFailAfter,
		Interval:             cfg.autopilotInterval(),
		Logger:               logging.HCLog(g.logger, "autopilot"),
	})
	g.leaders = leaderwatch.New(g.raft, g.id, g.addr, time.Now, g.metrics.failover.Observe)
	watch.Store(g.leaders)
	slowAfter := cfg.HeartbeatTimeout / 10 // raft's heartbeat interval
	g.verifier = newVerifier(g.raft, g.id, g.peers, g.leaders, g.peerTimeout(), slowAfter)
	g.verifier.rounds.observe = g.metrics.confirmLatency.Observe
	g.followerReads.slowAfter = slowAfter
	g.notify = notify
	g.disk.OnChange(g.diskChanged)
	g.logger.Info("group opened", "group", cfg.ID, "addr", g.addr, "raft_log_store", kind, "data_dir", cfg.DataDir, "existing_state", hasState, "applied", g.fsm.AppliedIndex())
	return g, nil
}

// OpenStore opens the state machine store in dataDir/fsm that a node's
// ranges share, reporting damage as opening a group would.
func OpenStore(dataDir string, logger *slog.Logger, small bool) (store *fsm.Store, err error) {
	dir := filepath.Join(dataDir, "fsm")
	err = unpanic("Badger", func() (err error) {
		store, err = fsm.OpenStore(dir, fsm.Options{Logger: logger, Small: small})
		return err
	})
	if err != nil {
		return nil, stateMachineDamage(dir, err)
	}
	return store, nil
}

// Start begins the group's own work once its features are attached: it
// hears raft's leadership changes from now on (raft queues the first few
// meanwhile), so no hook can miss the first term this node leads;
// autopilot attaches last, so that on a loss of leadership the features
// stop first. Then the loops that follow the leader, the peers, this
// node's readiness and its removal, and the -join requests.
func (g *Group) Start() {
	g.startOnce.Do(func() {
		g.Attach(Hooks{Led: g.freshenSnapshot})
		g.attachAutopilot()
		g.spawn(func() { g.watchLeadership(g.notify) })
		g.spawn(func() { leaderwatch.Run(g.raft, g.leaders, g.cfg.HeartbeatTimeout/10, g.raftDone) })
		g.spawn(g.watchPeers)
		g.spawn(g.watchReadiness)
		g.spawn(g.Membership().watchRemoval)
		if len(g.cfg.Join) > 0 {
			g.spawn(g.Membership().joinLoop)
		}
	})
}

// changeFeed routes the FSM's change notifications to the watch hubs.
type changeFeed struct{ keys, sessions *watch.Hub }

func (c changeFeed) KeysChanged(keys []string) { c.keys.KeysChanged(keys) }
func (c changeFeed) SessionsChanged()          { c.sessions.KeysChanged([]string{""}) }
func (c changeFeed) AllChanged()               { c.keys.AllChanged(); c.sessions.AllChanged() }

func (g *Group) spawn(fn func()) {
	g.wg.Add(1)
	go func() { defer g.wg.Done(); fn() }()
}

// GroupID is the group's ID on the wire.
func (g *Group) GroupID() uint64 { return g.cfg.ID }

// ID is this node's server ID in the group.
func (g *Group) ID() string { return g.id }

// Addr is this node's advertised address.
func (g *Group) Addr() string { return g.addr }

// BlockingQueries is the number of blocking queries waiting on keys.
func (g *Group) BlockingQueries() int { return g.watch.Len() }

// FirstLogIndex is the first entry of the group's raft log on this node
// (it rises as snapshots compact the log).
func (g *Group) FirstLogIndex() (uint64, error) { return g.logStore.FirstIndex() }

// Registry holds the group's metrics.
func (g *Group) Registry() *prometheus.Registry { return g.metrics.registry }

// StepAside is the first half of shutting down: background work stops,
// and with handOver a leader hands leadership to another voter, so the
// group does not wait out an election timeout (without, the others see
// what a crash looks like). The group still answers until Close.
func (g *Group) StepAside(handOver bool) {
	g.stepAside.Do(func() {
		g.cancel()
		g.pilot.Stop()
		if handOver && g.raft.State() == raft.Leader && g.voterCount() > 1 {
			if err := g.raft.LeadershipTransfer().Error(); err != nil {
				g.logger.Warn("leadership transfer before shutdown failed", "err", err)
			}
		}
	})
}

// Close shuts the group down (after StepAside, which it runs without
// hand-over if it has not run). Requests in flight should have ended: the
// node stops serving in between.
func (g *Group) Close() error {
	g.StepAside(false)
	g.closeOnce.Do(func() {
		g.metrics.watchers.Delete(g)
		var errs []error
		if err := g.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		// Shutdown closes the transport's listener but not its pooled
		// outgoing connections: close them, so that the peers' handlers
		// reading them end (and no file descriptor is left open). Raft
		// that shut itself down (a leader that removed itself) has not
		// closed the transport at all: close it (again, harmlessly).
		g.trans.CloseStreams()
		_ = g.trans.Close()
		close(g.raftDone)
		g.pilot.Stop() // in case leadership came back while raft shut down
		g.leaders.Stop()
		g.wg.Wait()
		if err := g.fsm.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := g.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
		g.closeErr = errors.Join(errs...)
		g.logger.Info("group stopped", "group", g.cfg.ID)
	})
	return g.closeErr
}

func (g *Group) voterCount() int {
	f := g.raft.GetConfiguration()
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
func (g *Group) Stats() map[string]string { return g.raft.Stats() }

// SessionTTLMin is the shortest session TTL this group accepts.
func (g *Group) SessionTTLMin() time.Duration { return g.cfg.SessionTTLMin }

// MemberAddrs are the advertised addresses of the group's servers.
func (g *Group) MemberAddrs() []string {
	f := g.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []string
	for _, srv := range f.Configuration().Servers {
		out = append(out, string(srv.Address))
	}
	return out
}
