package group

import (
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"

	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// Config describes one raft group on a node. Every field is set: the
// caller (package raftstore) fills the defaults and checks the values.
type Config struct {
	// ID is the group's ID on the wire; 0 is a node's first group.
	ID uint64
	// DataDir holds the group's raft log, snapshots and state machine.
	DataDir string
	// Bootstrap forms a new single-voter group when DataDir holds no raft
	// state; Join lists members to ask to add this node until one does.
	Bootstrap bool
	Join      []string
	// Birth, for a range a split created, starts the group's history with
	// the range's birth snapshot naming these servers when DataDir holds
	// no raft state (every replica of the split does it alike).
	Birth []raft.Server
	// Uninitialized opens a replica of a range this node may not hold yet
	// (raft traffic for it arrived): a snapshot brings its state.
	Uninitialized bool
	// MetricsOf, if set, is the node's first group: this group adds to its
	// node-wide metrics (forwarded writes, latencies, failovers, leadership
	// changes, blocking queries) instead of keeping a registry that no
	// /metrics serves. Its raft position is the node's to report per
	// range.
	MetricsOf *Group
	// ReadReplicaOf, if set, says which servers are read replicas (range
	// 0's marks, for the other ranges); unset, the group's own marks.
	ReadReplicaOf func(id string) (bool, error)
	// Store, if set, is the node's state machine store, shared by its
	// ranges: the group's state machine is range ID of it. Unset, the
	// group opens a store of its own in DataDir/fsm (range 0).
	Store *fsm.Store
	// ReadReplica makes the join request ask to stay a non-voter for good.
	ReadReplica bool
	// Recover rewrites the raft configuration from DataDir/peers.json.
	Recover bool

	MaxValueBytes  int
	Logger         *slog.Logger
	SmallFootprint bool
	// Disk guards the space of the node's data dir.
	Disk *diskguard.Guard

	HeartbeatTimeout        time.Duration
	ElectionTimeout         time.Duration
	LeaderLeaseTimeout      time.Duration
	SnapshotInterval        time.Duration
	SnapshotThreshold       uint64
	TrailingLogs            uint64
	ApplyTimeout            time.Duration
	SessionTTLMin           time.Duration
	ServerStabilizationTime time.Duration

	RaftLogStore        string
	RaftWALSegmentBytes int

	// ACLDefaultPolicy: "allow" or "deny" turn ACLs on; "" leaves them off.
	ACLDefaultPolicy     string
	ACLInitialManagement string
	// ACLToken is what this node's own API requests carry (its join).
	ACLToken string
}

// WALSegmentBytes is the size of the WAL's segments.
func (c *Config) WALSegmentBytes() int64 {
	if c.RaftWALSegmentBytes > 0 {
		return int64(c.RaftWALSegmentBytes)
	}
	return int64(wal.DefaultSegmentSize)
}

// autopilotInterval is how often the leader re-checks the health of the
// servers and promotes stable non-voters: often enough that a short
// stabilization time (tests) is not dominated by it.
func (c *Config) autopilotInterval() time.Duration {
	return min(max(c.ServerStabilizationTime/4, 50*time.Millisecond), time.Second)
}

// MaxCommandBytes bounds an encoded command (every op at its largest).
func (c *Config) MaxCommandBytes() int {
	return kv.MaxTxnOps*(c.MaxValueBytes+kv.MaxKeyBytes+64) + 4096
}
