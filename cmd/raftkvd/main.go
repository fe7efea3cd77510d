// Command raftkvd runs one raftkv node: raft and the HTTP API on one port.
//
//	raftkvd -id n1 -addr 127.0.0.1:7001 -data-dir /var/lib/raftkv/n1 -bootstrap
//	raftkvd -id n2 -addr 127.0.0.1:7002 -data-dir /var/lib/raftkv/n2 -join 127.0.0.1:7001
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/internal/integrity"
	"github.com/raftkv/raftkv/internal/logging"
	"github.com/raftkv/raftkv/internal/logstore"
	"github.com/raftkv/raftkv/internal/version"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raftstore"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, lookupEnv))
}

// run returns the exit code: 0 after a clean shutdown, 1 on a runtime
// error, 2 on bad flags.
func run(args []string, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	fs := flag.NewFlagSet("raftkvd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		id        = fs.String("id", "", "node ID, stable across restarts (default: the advertise address)")
		addr      = fs.String("addr", "127.0.0.1:7001", "listen address for raft + HTTP (raftkv's default endpoint)")
		advertise = fs.String("advertise", "", "address peers and clients use to reach this node (default: -addr)")
		dataDir   = fs.String("data-dir", "", "directory for the raft log, snapshots and the FSM (required)")
		bootstrap = fs.Bool("bootstrap", false, "form a new single-voter cluster if -data-dir holds no raft state")
		join      = fs.String("join", "", "comma-separated addresses of existing members to join through")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		logFormat = fs.String("log-format", "text", "text (logfmt) or json")
		maxValue  = fs.Int("max-value-bytes", kv.DefaultMaxValueBytes, "largest value accepted")
		pprof     = fs.Bool("pprof", false, "serve /debug/pprof on the HTTP port")
		webUI     = fs.Bool("ui", true, "serve the web UI at /ui/ (and redirect / there)")
		// Raft tuning (defaults suit most clusters).
		heartbeat    = fs.Duration("heartbeat-timeout", 0, "how long a follower waits without hearing from the leader before calling an election (default 500ms)")
		election     = fs.Duration("election-timeout", 0, "how long a candidate waits for votes before trying again (default 500ms)")
		lease        = fs.Duration("leader-lease-timeout", 0, "how long a leader keeps leading without hearing from a majority (default half the heartbeat timeout)")
		snapThresh   = fs.Uint64("snapshot-threshold", 0, "log entries between snapshots (default 8192)")
		trailingLogs = fs.Uint64("trailing-logs", 0, "log entries kept after a snapshot (default 10240)")
		snapInterval = fs.Duration("snapshot-interval", 0, "how often to check whether to snapshot (default 2m)")
		logStore     = fs.String("raft-log-store", "", "wal (hashicorp/raft-wal, one fsync per append) or boltdb (raft-boltdb); default: what -data-dir holds, else wal")
		walSegment   = fs.Int("raft-wal-segment-size", 0, "size in bytes of the WAL's segment files (default 64 MiB); the log's head is dropped a segment at a time")
		diskReserve  = fs.Int64("disk-reserve", 0, "bytes kept in -data-dir for when the disk fills up: given back then, while writes are refused (default 128 MiB; at least a WAL segment)")
		stabilize    = fs.Duration("server-stabilization-time", 10*time.Second, "how long a joined node must stay healthy before it becomes a voter")
		ttlMin       = fs.Duration("session-ttl-min", kv.DefaultSessionTTLMin, "the shortest session TTL accepted (Consul's session_ttl_min; at least 1s; give every node the same)")
		holdTimeout  = fs.Duration("rpc-hold-timeout", kv.DefaultLeaderHold, "how long a request that finds no leader waits for one before the answer \"500 No cluster leader\" (Consul's rpc_hold_timeout; 0: not at all)")
		showVersion  = fs.Bool("version", false, "print the version and exit")
		tlsCert      = fs.String("tls-cert", "", "this node's certificate (PEM); with -tls-key and -tls-ca the port speaks only TLS")
		tlsKey       = fs.String("tls-key", "", "this node's private key (PEM)")
		tlsCA        = fs.String("tls-ca", "", "the CA that signs every node's and client's certificate (PEM)")
		tlsVerifyIn  = fs.Bool("tls-verify-incoming", false, "HTTP clients must present a certificate signed by -tls-ca too (peers always must)")
		aclDefault   = fs.String("acl-default-policy", "", "allow or deny: turns ACLs on; what a token's policies do not speak of (default: ACLs off)")
		aclInitial   = fs.String("acl-initial-management", "", "a SecretID that is a management token from the first start on (instead of PUT /v1/acl/bootstrap)")
		aclToken     = fs.String("acl-token", "", "the token this node's own API requests carry (-join needs operator write)")
		nonVoter     = fs.Bool("non-voter", false, "join as a read replica: a non-voter for good (serves reads, never votes)")
		recoverFlag  = fs.Bool("recover", false, "rewrite the raft configuration from <data-dir>/peers.json before starting (quorum-loss recovery)")
	)
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "raftkvd", version.String())
		return 0
	}
	if err := applyEnv(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "raftkvd: %v\n", err)
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "raftkvd: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *dataDir == "" {
		return usage("-data-dir is required")
	}
	if n := countSet(*tlsCert, *tlsKey, *tlsCA); n != 0 && n != 3 {
		return usage("-tls-cert, -tls-key and -tls-ca go together: all three or none")
	}
	if *tlsVerifyIn && *tlsCA == "" {
		return usage("-tls-verify-incoming needs -tls-cert, -tls-key and -tls-ca")
	}
	if _, err := logstore.ParseKind(*logStore); err != nil {
		return usage("-raft-log-store: %v", err)
	}
	switch *aclDefault {
	case "", "allow", "deny":
	default:
		return usage("-acl-default-policy must be allow or deny")
	}
	if *aclInitial != "" && *aclDefault == "" {
		return usage("-acl-initial-management needs -acl-default-policy")
	}
	if *maxValue <= 0 {
		return usage("-max-value-bytes must be positive")
	}
	if *ttlMin < kv.LowestSessionTTLMin || *ttlMin > kv.SessionTTLMax {
		return usage("-session-ttl-min %s: want %s to %s", *ttlMin, kv.LowestSessionTTLMin, kv.SessionTTLMax)
	}
	if *holdTimeout < 0 {
		return usage("-rpc-hold-timeout must not be negative")
	}
	leaderHold := *holdTimeout
	if leaderHold == 0 {
		leaderHold = -1 // raftstore: not held
	}
	level, err := logging.ParseLevel(*logLevel)
	if err != nil {
		return usage("-log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, opts)
	case "json":
		handler = slog.NewJSONHandler(stderr, opts)
	default:
		return usage("-log-format must be text or json")
	}
	logger := slog.New(handler)
	var joinAddrs []string
	for _, a := range strings.Split(*join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			joinAddrs = append(joinAddrs, a)
		}
	}

	store, err := raftstore.Open(raftstore.Config{
		ID:            *id,
		Addr:          *addr,
		Advertise:     *advertise,
		DataDir:       *dataDir,
		Bootstrap:     *bootstrap,
		Join:          joinAddrs,
		MaxValueBytes: *maxValue,
		Logger:        logger,
		EnablePprof:   *pprof,
		DisableUI:     !*webUI,

		HeartbeatTimeout:   *heartbeat,
		ElectionTimeout:    *election,
		LeaderLeaseTimeout: *lease,
		SnapshotThreshold:  *snapThresh,
		TrailingLogs:       *trailingLogs,
		SnapshotInterval:   *snapInterval,

		ServerStabilizationTime: *stabilize,
		SessionTTLMin:           *ttlMin,
		LeaderHold:              leaderHold,
		RaftLogStore:            *logStore,
		RaftWALSegmentBytes:     *walSegment,
		DiskReserve:             *diskReserve,
		Recover:                 *recoverFlag,
		ReadReplica:             *nonVoter,
		TLS:                     raftstore.TLSFiles{CA: *tlsCA, Cert: *tlsCert, Key: *tlsKey},
		TLSVerifyIncoming:       *tlsVerifyIn,
		ACLDefaultPolicy:        *aclDefault,
		ACLInitialManagement:    *aclInitial,
		ACLToken:                *aclToken,
	})
	if err != nil {
		var d *integrity.Damage
		if errors.As(err, &d) {
			fmt.Fprintf(stderr, "raftkvd: damaged data: %v (how to recover: docs/OPERATIONS.md#damaged-data)\n", d)
			return 1
		}
		fmt.Fprintf(stderr, "raftkvd: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger.Info("raftkvd serving", "id", store.ID(), "addr", store.Addr())
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case <-store.Removed():
		logger.Info("removed from the cluster: shutting down (start again with -join to rejoin as a new member)")
	}
	if err := store.Close(); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
