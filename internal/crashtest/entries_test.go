package crashtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

var t0 = time.Unix(1_800_000_000, 0)

// entry is the log entry the workload writes at index in term. It is a pure
// function of the two, so that whoever reads an entry back knows from its
// term alone what the rest must be, and an entry rewritten in a new term
// after a suffix was cleared differs from the one it replaced.
//
// Sizes vary from a few bytes to 16 KiB so that segments of segmentBytes
// fill and rotate after a handful to a few dozen entries, and values above
// Badger's 4 KiB threshold go to its value log.
func entry(index, term uint64) *raft.Log {
	r := rand.New(rand.NewPCG(index, term))
	l := &raft.Log{Index: index, Term: term, Type: raft.LogCommand, AppendedAt: t0.Add(time.Duration(index) * time.Millisecond)}
	switch x := r.IntN(100); {
	case x < 3:
		l.Type = raft.LogNoop
		return l
	case x < 5:
		l.Type = raft.LogConfiguration // the FSM only records its index
		l.Data = randBytes(r, 20+r.IntN(200))
		return l
	}
	// Five seconds a command: tombstones (15 min) and idempotency records
	// (10 min) expire within a few hundred entries, so reaping is exercised.
	c := &kv.Command{Time: t0.Add(time.Duration(index) * 5 * time.Second)}
	if r.IntN(4) == 0 {
		c.IdempotencyKey = fmt.Sprintf("req-%d", r.IntN(64))
	}
	for range 1 + r.IntN(3) {
		c.Ops = append(c.Ops, randomOp(r, index))
	}
	l.Data = fsm.EncodeCommand(c)
	if r.IntN(10) == 0 {
		l.Extensions = randBytes(r, 1+r.IntN(32))
	}
	return l
}

func randomOp(r *rand.Rand, index uint64) kv.Op {
	key := fmt.Sprintf("%c/%02d", 'a'+r.IntN(3), r.IntN(16))
	switch x := r.IntN(20); {
	case x < 12:
		return kv.Op{Verb: kv.VerbSet, Key: key, Value: randBytes(r, valueSize(r)), Flags: uint64(r.IntN(3))}
	case x < 15:
		return kv.Op{Verb: kv.VerbDelete, Key: key}
	case x < 16:
		return kv.Op{Verb: kv.VerbDeleteTree, Key: key[:2]}
	default:
		return kv.Op{Verb: kv.VerbCAS, Key: key, Value: randBytes(r, valueSize(r)), Index: uint64(r.IntN(int(index) + 1))}
	}
}

func valueSize(r *rand.Rand) int {
	switch x := r.IntN(100); {
	case x < 70:
		return r.IntN(512)
	case x < 95:
		return 512 + r.IntN(4<<10)
	}
	return 4<<10 + r.IntN(12<<10)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+8)
	for len(b) < n {
		b = binary.LittleEndian.AppendUint64(b, r.Uint64())
	}
	return b[:n]
}

// sameEntry says how got differs from want ("" : it does not).
func sameEntry(got, want *raft.Log) string {
	switch {
	case got.Index != want.Index:
		return fmt.Sprintf("index %d", got.Index)
	case got.Term != want.Term:
		return fmt.Sprintf("term %d, want %d", got.Term, want.Term)
	case got.Type != want.Type:
		return fmt.Sprintf("type %v, want %v", got.Type, want.Type)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("data differs (%d bytes, want %d)", len(got.Data), len(want.Data))
	case !bytes.Equal(got.Extensions, want.Extensions):
		return "extensions differ"
	case !got.AppendedAt.Equal(want.AppendedAt):
		return fmt.Sprintf("appended at %v, want %v", got.AppendedAt, want.AppendedAt)
	}
	return ""
}
