package crashtest

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// reference is a fresh FSM fed the committed entries in order: at every
// index, the state the node's FSM and its snapshots must hold there.
type reference struct {
	f       *fsm.FSM
	digests map[uint64]string // state digest by applied index
	saved   map[uint64][]byte // a few recent states, to go back to
	rewinds int               // times it had to go back
}

const savedStates = 16

func newReference(t testing.TB) *reference {
	f, err := fsm.Open(t.TempDir(), fsm.Options{Small: true})
	if err != nil {
		t.Fatalf("open reference fsm: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return &reference{f: f, digests: map[uint64]string{}, saved: map[uint64][]byte{}}
}

// digest is the digest of the state at index. committed[i] is the term of
// committed entry i, which fixes the entry (see entry).
func (r *reference) digest(index uint64, committed []uint64) (string, error) {
	if d, ok := r.digests[index]; ok {
		return d, nil
	}
	if index >= uint64(len(committed)) {
		return "", fmt.Errorf("reference: index %d is not committed", index)
	}
	if index < r.f.AppliedIndex() {
		if err := r.rewind(index); err != nil {
			return "", err
		}
	}
	for r.f.AppliedIndex() < index {
		from := r.f.AppliedIndex() + 1
		to := min(index, from+255)
		logs := make([]*raft.Log, 0, to-from+1)
		for i := from; i <= to; i++ {
			logs = append(logs, entry(i, committed[i]))
		}
		r.f.ApplyBatch(logs)
		if r.f.AppliedIndex() != to {
			return "", fmt.Errorf("reference: applied index %d after applying %d..%d", r.f.AppliedIndex(), from, to)
		}
	}
	var state bytes.Buffer
	if _, err := r.f.WriteSnapshot(&state); err != nil {
		return "", fmt.Errorf("reference: %w", err)
	}
	d, _ := digestOf(bytes.NewReader(state.Bytes()))
	r.digests[index] = d
	r.saved[index] = state.Bytes()
	if len(r.saved) > savedStates {
		delete(r.saved, slices.Min(slices.Collect(maps.Keys(r.saved))))
	}
	return d, nil
}

// rewind goes back to the newest saved state at or before index (or to the
// empty state), since the FSM only moves forward by applying.
func (r *reference) rewind(index uint64) error {
	r.rewinds++
	var best uint64
	for i := range r.saved {
		if i <= index && i > best {
			best = i
		}
	}
	if best == 0 {
		if err := r.f.Reset(); err != nil {
			return fmt.Errorf("reference: start over: %w", err)
		}
		return nil
	}
	if err := r.f.Restore(io.NopCloser(bytes.NewReader(r.saved[best]))); err != nil {
		return fmt.Errorf("reference: go back to %d: %w", best, err)
	}
	return nil
}

// logsUpTo is entries 1..n of term 1.
func logsUpTo(n uint64) []*raft.Log {
	logs := make([]*raft.Log, 0, n)
	for i := uint64(1); i <= n; i++ {
		logs = append(logs, entry(i, 1))
	}
	return logs
}
