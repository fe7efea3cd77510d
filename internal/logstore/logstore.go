// Package logstore opens a node's raft log and stable store: hashicorp's
// raft-wal (segment files; one fsync per append) or raft-boltdb (a bbolt
// B-tree; two fsyncs per commit, and appends that slow down as its
// freelist grows after truncations). It also decides which one a data dir
// uses: the one it already holds, so that a node never silently starts
// over on an empty log beside its old one.
package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	walmetrics "github.com/hashicorp/raft-wal/metrics"
	"go.etcd.io/bbolt"
)

// Kind names a log store implementation.
type Kind string

const (
	WAL    Kind = "wal"
	BoltDB Kind = "boltdb"
	// Default is what a new data dir gets.
	Default = WAL
)

// Where each kind lives in a data dir.
const (
	boltFile = "raft.db"
	walDir   = "wal"
)

// Store is a raft log and stable store.
type Store interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// ParseKind reads a -raft-log-store value ("" : decide from the data dir).
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case "", WAL, BoltDB:
		return k, nil
	}
	return "", fmt.Errorf("unknown raft log store %q (want wal or boltdb)", s)
}

// ErrOtherKind: the data dir holds a log of the other kind than asked for.
var ErrOtherKind = errors.New("the data dir holds a raft log of another kind")

// Choose is the kind dataDir uses: the one it holds; asked (or Default)
// for a new one. Asking for the other kind than the one it holds is an
// error: starting with an empty log would make the node forget its votes
// and entries (see docs/OPERATIONS.md for moving a node to another kind).
func Choose(dataDir string, asked Kind) (Kind, error) {
	held := Held(dataDir)
	switch {
	case held == "" && asked == "":
		return Default, nil
	case held == "":
		return asked, nil
	case asked == "" || asked == held:
		return held, nil
	}
	return "", fmt.Errorf("%w: %s holds a %s log, not %s; start it with -raft-log-store %s, or empty it and join the cluster again", ErrOtherKind, dataDir, held, asked, held)
}

// Held is the kind whose files dataDir holds ("" : none, a new log).
func Held(dataDir string) Kind {
	if fi, err := os.Stat(Path(dataDir, BoltDB)); err == nil && fi.Size() > 0 {
		return BoltDB
	}
	if entries, err := os.ReadDir(Path(dataDir, WAL)); err == nil && len(entries) > 0 {
		return WAL
	}
	return ""
}

// Path is where the log of kind lives in dataDir: the WAL's directory, or
// the bbolt file.
func Path(dataDir string, kind Kind) string {
	if kind == BoltDB {
		return filepath.Join(dataDir, boltFile)
	}
	return filepath.Join(dataDir, walDir)
}

// Options tune a store.
type Options struct {
	// SegmentBytes is the size of the WAL's segment files (default 64 MiB).
	// The log's head is dropped a whole segment at a time; until then a
	// leader still sends a lagging follower entries it has compacted
	// rather than a snapshot. Small segments make snapshot installs happen
	// as they would on raft-boltdb (tests).
	SegmentBytes int
}

// Open opens (creating if needed) the store of kind in dataDir.
func Open(dataDir string, kind Kind, logger hclog.Logger, opts Options) (Store, error) {
	switch kind {
	case WAL:
		dir := Path(dataDir, WAL)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("raft log: %w", err)
		}
		size := opts.SegmentBytes
		if size <= 0 {
			size = wal.DefaultSegmentSize
		}
		if err := finishRotation(dir, size); err != nil {
			return nil, fmt.Errorf("raft log (wal) in %s: %w", dir, err)
		}
		meta := &metadb.BoltMetaDB{}
		// Its metrics (appends, bytes, rotations, truncations) go where
		// raft's go: the process's go-metrics sink, as raftkv_raft_wal_*.
		w, err := wal.Open(dir, wal.WithLogger(logger), wal.WithMetaStore(meta), wal.WithSegmentSize(size),
			wal.WithMetricsCollector(walmetrics.NewGoMetricsCollector([]string{"raft", "wal"}, nil, nil)))
		if err != nil {
			meta.Close()
			return nil, fmt.Errorf("raft log (wal) in %s: %w", dir, err)
		}
		return walStore{w, meta}, nil
	case BoltDB:
		b, err := raftboltdb.New(raftboltdb.Options{
			Path:        Path(dataDir, BoltDB),
			BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true},
		})
		if err != nil {
			return nil, fmt.Errorf("raft log (boltdb) in %s: %w", dataDir, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown raft log store %q", kind)
}

// walStore closes the WAL's metadata database too: raft-wal's Close leaves
// it open, and its file lock then blocks a reopen in the same process (a
// node restarted in-process, as tests and embedders do) for ever.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (w walStore) Close() error {
	err := w.WAL.Close()
	if merr := w.meta.Close(); err == nil {
		err = merr
	}
	return err
}
