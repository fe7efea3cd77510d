package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/raftkv/raftkv/internal/diskguard"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/logstore"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/kv"
)

// Config describes one node. Only DataDir and one of Addr/Listener are
// required.
type Config struct {
	// ID is the node's raft server ID, stable across restarts
	// (default: the advertise address).
	ID string
	// Addr is the address to listen on for raft and HTTP ("127.0.0.1:0"
	// picks a free port). Ignored when Listener is set.
	Addr     string
	Listener net.Listener
	// Advertise is the address peers and clients use (default: the
	// listener's address; 0.0.0.0 is refused).
	Advertise string
	DataDir   string
	// Bootstrap forms a new single-voter cluster when DataDir holds no raft
	// state. A no-op otherwise.
	Bootstrap bool
	// Join lists addresses of existing members. The node asks them to add
	// it (forwarded to the leader) until one accepts; a no-op if it already
	// is a member with this address.
	Join []string

	// MaxValueBytes is the largest value a write may carry (default
	// kv.DefaultMaxValueBytes, 512 KiB).
	MaxValueBytes int
	// Logger receives the node's logs, raft's and Badger's included, one
	// structured line per event; nil discards them.
	Logger *slog.Logger
	// SmallFootprint sizes Badger for several nodes in one process.
	SmallFootprint bool
	// DiskReserve is the space kept in the data dir for when the disk fills
	// up (default diskguard.DefaultReserve, 128 MiB; 16 MiB with
	// SmallFootprint; at least a WAL segment and 8 MiB): see
	// docs/OPERATIONS.md, "A full disk".
	DiskReserve int64
	// EnablePprof serves /debug/pprof on the HTTP port.
	EnablePprof bool
	// DisableUI turns off the web UI at /ui/.
	DisableUI bool

	// Raft tuning; zero values take the defaults below. The heartbeat and
	// election timeouts set how fast a lost leader is replaced (about one to
	// three heartbeat timeouts) against how easily a stall is mistaken for a
	// loss; see docs/OPERATIONS.md.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	// RangeMembershipInterval is how often each range's leader brings the
	// range's replicas in line with the cluster's membership, one change
	// at a time (default 1s).
	RangeMembershipInterval time.Duration
	// ApplyTimeout bounds how long a write waits for a leader and for its
	// commit when the caller's context has no deadline.
	ApplyTimeout time.Duration
	// LeaderHold is how long an HTTP request that finds no leader is held
	// waiting for one before it is answered "No cluster leader" (Consul's
	// RPC hold timeout; default kv.DefaultLeaderHold, negative: not held).
	// See httpd.Options.LeaderHold.
	LeaderHold time.Duration
	// SessionTTLMin is the shortest session TTL this node accepts
	// (Consul's session_ttl_min; default kv.DefaultSessionTTLMin, at least
	// kv.LowestSessionTTLMin). Give every node the same.
	SessionTTLMin time.Duration
	// TLS, when its files are given, makes the port speak only TLS: mutual
	// between nodes (each verified against TLS.CA, and the peer's
	// certificate must name the host dialled), raft and HTTP told apart by
	// ALPN. TLSVerifyIncoming demands certificates from HTTP clients too.
	TLS               TLSFiles
	TLSVerifyIncoming bool
	// ReadReplica makes the -join request ask to stay a non-voter for good
	// (it serves reads, never votes).
	ReadReplica bool
	// Recover rewrites this node's raft configuration from
	// DataDir/peers.json before starting (quorum-loss recovery; see
	// docs/OPERATIONS.md), then renames the file to peers.json.applied. A
	// no-op without the file.
	Recover bool
	// ServerStabilizationTime is how long a joined node must stay healthy
	// (reachable, caught up) before the leader makes it a voter (default
	// 10s; negative: at once once healthy).
	ServerStabilizationTime time.Duration

	// RaftLogStore is "wal" (hashicorp/raft-wal) or "boltdb"
	// (raft-boltdb); empty: what DataDir already holds, else wal. Asking
	// for the other kind than DataDir holds is an error.
	RaftLogStore string
	// RaftWALSegmentBytes sizes the WAL's segment files (default 64 MiB;
	// see logstore.Options).
	RaftWALSegmentBytes int

	// ACLDefaultPolicy turns ACLs on: "allow" or "deny" is what a token's
	// policies do not speak of (the anonymous token has none at first).
	// Empty: ACLs off.
	ACLDefaultPolicy string
	// ACLInitialManagement is a SecretID that the first leader makes a
	// management token (instead of a bootstrap through the API).
	ACLInitialManagement string
	// ACLToken is the token this node's own API requests carry (its -join
	// request, which needs operator write).
	ACLToken string
}

// TLSFiles names the PEM files of a node's TLS: CA verifies every node and
// client, Cert and Key are the node's own. Files are re-read when they
// change. The zero value: no TLS.
type TLSFiles struct {
	CA, Cert, Key string
}

// files is f as the node takes it (a conversion: the two keep the same
// fields).
func (f TLSFiles) files() tlsutil.Files {
	return tlsutil.Files(f)
}

// walSegmentBytes is the size of the WAL's segments.
func (c *Config) walSegmentBytes() int64 {
	return c.groupConfig(0, c.DataDir, nil).WALSegmentBytes()
}

// groupConfig is the configuration of the node's group id, in dir.
func (c *Config) groupConfig(id uint64, dir string, disk *diskguard.Guard) *group.Config {
	return &group.Config{
		ID:                      id,
		DataDir:                 dir,
		Bootstrap:               c.Bootstrap,
		Join:                    c.Join,
		ReadReplica:             c.ReadReplica,
		Recover:                 c.Recover,
		MaxValueBytes:           c.MaxValueBytes,
		Logger:                  c.Logger,
		SmallFootprint:          c.SmallFootprint,
		Disk:                    disk,
		HeartbeatTimeout:        c.HeartbeatTimeout,
		ElectionTimeout:         c.ElectionTimeout,
		LeaderLeaseTimeout:      c.LeaderLeaseTimeout,
		SnapshotInterval:        c.SnapshotInterval,
		SnapshotThreshold:       c.SnapshotThreshold,
		TrailingLogs:            c.TrailingLogs,
		ApplyTimeout:            c.ApplyTimeout,
		SessionTTLMin:           c.SessionTTLMin,
		ServerStabilizationTime: c.ServerStabilizationTime,
		RaftLogStore:            c.RaftLogStore,
		RaftWALSegmentBytes:     c.RaftWALSegmentBytes,
		ACLDefaultPolicy:        c.ACLDefaultPolicy,
		ACLInitialManagement:    c.ACLInitialManagement,
		ACLToken:                c.ACLToken,
	}
}

// Default raft timing: a follower calls an election after 0.5–1.5 s without
// hearing from the leader (hashicorp/raft randomises each wait between one and
// two timeouts), so a lost leader is replaced in about 1–2 s. Measured on a
// loaded two-core machine (1,000 clients), heartbeats never went missing
// for that long.
const (
	DefaultHeartbeatTimeout = 500 * time.Millisecond
	DefaultElectionTimeout  = 500 * time.Millisecond
)

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return errors.New("raftstore: DataDir is required")
	}
	if c.Listener == nil && c.Addr == "" {
		return errors.New("raftstore: Addr or Listener is required")
	}
	if c.MaxValueBytes <= 0 {
		c.MaxValueBytes = kv.DefaultMaxValueBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, c.HeartbeatTimeout/2)
	def(&c.SnapshotInterval, 2*time.Minute)
	def(&c.RangeMembershipInterval, time.Second)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.ServerStabilizationTime, 10*time.Second)
	def(&c.SessionTTLMin, kv.DefaultSessionTTLMin)
	if c.SessionTTLMin < kv.LowestSessionTTLMin || c.SessionTTLMin > kv.SessionTTLMax {
		return fmt.Errorf("raftstore: SessionTTLMin %s: want %s to %s", c.SessionTTLMin, kv.LowestSessionTTLMin, kv.SessionTTLMax)
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SmallFootprint && c.RaftWALSegmentBytes <= 0 {
		c.RaftWALSegmentBytes = 8 << 20
	}
	if c.DiskReserve <= 0 && c.SmallFootprint {
		c.DiskReserve = 16 << 20
	}
	if c.DiskReserve <= 0 {
		c.DiskReserve = diskguard.DefaultReserve
	}
	// The reserve must hold a new WAL segment (allocated whole) and a little.
	c.DiskReserve = max(c.DiskReserve, c.walSegmentBytes()+8<<20)
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if _, err := logstore.ParseKind(c.RaftLogStore); err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	switch c.ACLDefaultPolicy {
	case "", "allow", "deny":
	default:
		return fmt.Errorf("raftstore: ACL default policy %q (want allow or deny)", c.ACLDefaultPolicy)
	}
	if c.ACLDefaultPolicy == "" && c.ACLInitialManagement != "" {
		return errors.New("raftstore: an initial management token needs ACLs on (a default policy)")
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return fmt.Errorf("raftstore: LeaderLeaseTimeout %s exceeds HeartbeatTimeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	return nil
}
