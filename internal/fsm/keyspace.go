package fsm

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// A node's ranges share one Badger (Store). What belongs to a user key —
// the key's record ("k"), its tombstone ("t"), its lock-delay ("d") — is
// stored under the key alone, whichever range holds it, so that a split
// moves no data: a range is only the span of user keys it owns. Everything
// else a range keeps (applied index, clock, idempotency table, expiry
// queue, session holds, descriptor) is range-local: under "R" + the range
// ID (8 bytes, big-endian) + the name range 0 uses. Range 0 uses the names
// unprefixed, as every release before ranges did, so an existing data dir
// is range 0 as it stands. A prefix kept whole ("w") is stored under its
// prefix like a key. Sessions, ACLs and read-replica marks are the
// meta range's (range 0) only.
var rangeLocalPrefix = []byte("R")

// keyspace says where one range's range-local state lives.
type keyspace struct {
	id     uint64
	prefix []byte // nil for range 0
}

func newKeyspace(id uint64) keyspace {
	if id == 0 {
		return keyspace{}
	}
	return keyspace{id: id, prefix: binary.BigEndian.AppendUint64(append([]byte(nil), rangeLocalPrefix...), id)}
}

// local is the Badger key of the range-local name.
func (k keyspace) local(name []byte) []byte {
	if k.prefix == nil {
		return name
	}
	b := make([]byte, 0, len(k.prefix)+len(name))
	return append(append(b, k.prefix...), name...)
}

// localOf is local(p + name).
func (k keyspace) localOf(p []byte, name string) []byte {
	b := make([]byte, 0, len(k.prefix)+len(p)+len(name))
	return append(append(append(b, k.prefix...), p...), name...)
}

// userKeyPrefixes are the first bytes of what is stored under a user key.
var userKeyPrefixes = [][]byte{dataPrefix, tombPrefix, delayPrefix, keepPrefix}

// keepPrefix + P marks the prefix P kept whole: stored under P, so it is
// the range's that holds P, and moves with it.
var keepPrefix = []byte("w")

// clip returns the user keys under prefix that span holds, as [lo, hi)
// (hi "": unbounded); ok is false if there are none.
func clip(prefix string, span rangemap.Descriptor) (lo, hi string, ok bool) {
	lo, hi = prefix, rangemap.PrefixEnd(prefix)
	if span.Start > lo {
		lo = span.Start
	}
	if span.End != "" && (hi == "" || span.End < hi) {
		hi = span.End
	}
	return lo, hi, hi == "" || lo < hi
}

// segments are the raw Badger key intervals [from, to) (nil to: unbounded),
// in key order (so a snapshot lists its records in key order, as it always
// has), that hold the range's state: the user keys of span under each user-key
// prefix, and the range-local state (range 0: every key whose first byte is
// neither a user-key prefix nor "R").
func (k keyspace) segments(span *rangemap.Descriptor) [][2][]byte {
	var segs [][2][]byte
	for _, p := range userKeyPrefixes {
		from := prefixed(p, span.Start)
		to := prefixed(p, span.End)
		if span.End == "" {
			to = []byte{p[0] + 1}
		}
		segs = append(segs, [2][]byte{from, to})
	}
	if k.prefix != nil {
		segs = append(segs, [2][]byte{k.prefix, []byte(rangemap.PrefixEnd(string(k.prefix)))})
	} else {
		blocked := []byte{rangeLocalPrefix[0], delayPrefix[0], dataPrefix[0], tombPrefix[0], keepPrefix[0]} // in byte order
		from := []byte{}
		for _, c := range blocked {
			segs = append(segs, [2][]byte{from, {c}})
			from = []byte{c + 1}
		}
		segs = append(segs, [2][]byte{from, nil})
	}
	slices.SortFunc(segs, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	return segs
}

// mayHold says whether a raw key can be this range's at all: a user key's,
// or range-local to this range (a snapshot of another range's state is
// refused).
func (k keyspace) mayHold(raw []byte) bool {
	for _, p := range userKeyPrefixes {
		if len(raw) > 0 && raw[0] == p[0] {
			return true
		}
	}
	if k.prefix == nil {
		return len(raw) == 0 || raw[0] != rangeLocalPrefix[0]
	}
	return bytes.HasPrefix(raw, k.prefix)
}
