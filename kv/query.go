package kv

import (
	"io"
	"time"
)

// ReadKind says what a Query returns.
type ReadKind uint8

const (
	ReadGet  ReadKind = iota // one key
	ReadList                 // every entry under a prefix
	ReadKeys                 // key names under a prefix, optionally rolled up at Separator
)

// Query is a read. Reads are linearizable unless Stale is set.
type Query struct {
	Kind      ReadKind
	Key       string // the key, or the prefix for List and Keys
	Separator string // Keys only
	Stale     bool
	// MinIndex > 0 makes the query blocking: it answers once the result's
	// Index is greater than MinIndex, or after Wait (DefaultWait if zero,
	// at most MaxWait), whichever comes first.
	MinIndex uint64
	Wait     time.Duration
}

// Blocking query limits (docs/API.md).
const (
	DefaultWait = 5 * time.Minute
	MaxWait     = 10 * time.Minute
)

// QueryResult is the answer to a Query. An absent key or an empty prefix is
// not an error: Entries (or Keys) is empty and Index still says how fresh
// the answer is.
type QueryResult struct {
	Entries []Entry
	Keys    []string
	// Index is what a client passes back to wait for a change: the key's
	// ModifyIndex for a single existing key, otherwise the last index that
	// changed any key. Never 0.
	Index       uint64
	KnownLeader bool
	LastContact time.Duration
	Stale       bool
}

// Server is one member of the raft configuration.
type Server struct {
	ID      string
	Address string
	Leader  bool
	Voter   bool
}

// Configuration is the cluster membership as of a raft log index.
type Configuration struct {
	Servers []Server
	Index   uint64
}

// Snapshot is an open snapshot of the whole replicated state: Consul's
// archive layout, Index the applied index it captures. Close it.
type Snapshot struct {
	Index uint64
	io.ReadCloser
}
