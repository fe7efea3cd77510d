package crashtest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/hashicorp/raft"
)

// The child's workload: each op is a call raft makes on its storage, with
// the arguments and in the order raft would.

// step runs one random operation; the weights make appends and suffix
// clearing frequent, since those are what a log store must get right.
func (n *node) step() error {
	switch x := n.r.IntN(100); {
	case x < 40:
		return n.append(n.next)
	case x < 50:
		return n.clearSuffix()
	case x < 55:
		return n.compact()
	case x < 60:
		return n.vote()
	case x < 74:
		n.commitSome()
		return nil
	case x < 88:
		return n.apply()
	case x < 96:
		return n.snapshot()
	}
	metas, err := n.snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) == 0 {
		return nil
	}
	return n.restore(metas[0])
}

// do runs one storage call between its "B" and "A" lines. The "A" line
// carries args and then whatever call returns.
func do(op string, args []any, call func() ([]any, error)) error {
	say(append([]any{"B", op}, args...)...)
	more, err := call()
	if err != nil {
		return fmt.Errorf("%s %v: %w", op, args, err)
	}
	say(append(append([]any{"A", op}, args...), more...)...)
	return nil
}

func (n *node) append(from uint64) error {
	size := 1 + n.r.IntN(16)
	if n.r.IntN(8) == 0 {
		size = 1 + n.r.IntN(64)
	}
	logs := make([]*raft.Log, size)
	for i := range logs {
		logs[i] = entry(from+uint64(i), n.term)
	}
	to := from + uint64(size) - 1
	err := do("append", []any{from, to, n.term}, func() ([]any, error) {
		return nil, n.log.StoreLogs(logs)
	})
	if err != nil {
		return err
	}
	if n.last == 0 {
		n.first = from
	}
	n.last, n.next = to, to+1
	return n.checkBounds()
}

// clearSuffix is what a follower does when a new leader's entries conflict
// with its uncommitted tail: take the new term, delete from the first
// conflicting index to the end, append the leader's entries from there.
func (n *node) clearSuffix() error {
	if n.last <= n.commit {
		return n.append(n.next)
	}
	k := n.commit + 1 + uint64(n.r.IntN(int(n.last-n.commit)))
	if err := n.setTerm(n.term + 1); err != nil {
		return err
	}
	err := do("tail", []any{k, n.last}, func() ([]any, error) {
		return nil, n.log.DeleteRange(k, n.last)
	})
	if err != nil {
		return err
	}
	n.last, n.next = k-1, k
	if n.last < n.first {
		n.first, n.last = 0, 0
	}
	if err := n.checkBounds(); err != nil {
		return err
	}
	return n.append(k)
}

// compact drops the log's head up to the latest snapshot, keeping a random
// number of trailing entries, as raft does after a snapshot.
func (n *node) compact() error {
	if n.snap.Index == 0 || n.first == 0 {
		return nil
	}
	k := min(n.snap.Index-min(n.snap.Index, uint64(n.r.IntN(32))), n.last)
	if k < n.first {
		return nil
	}
	first := n.first
	err := do("head", []any{first, k}, func() ([]any, error) {
		return nil, n.log.DeleteRange(first, k)
	})
	if err != nil {
		return err
	}
	n.first = k + 1
	if k == n.last {
		n.first, n.last = 0, 0
	}
	return n.checkBounds()
}

func (n *node) vote() error {
	if n.r.IntN(2) == 0 {
		return n.setTerm(n.term + 1)
	}
	err := do("stable", []any{string(keyLastVoteTerm), n.term}, func() ([]any, error) {
		return nil, n.log.SetUint64(keyLastVoteTerm, n.term)
	})
	if err != nil {
		return err
	}
	cand := fmt.Sprintf("n%d", n.r.IntN(5))
	return do("stable", []any{string(keyLastVoteCand), cand}, func() ([]any, error) {
		return nil, n.log.Set(keyLastVoteCand, []byte(cand))
	})
}

func (n *node) setTerm(term uint64) error {
	err := do("stable", []any{string(keyCurrentTerm), term}, func() ([]any, error) {
		return nil, n.log.SetUint64(keyCurrentTerm, term)
	})
	if err == nil {
		n.term = term
	}
	return err
}

// commitSome marks entries committed. It is not a storage call, but the
// parent must hear of it before anything is applied: committed entries are
// never cleared, and they define the state the FSM must reach.
func (n *node) commitSome() {
	if n.last > n.commit {
		n.commit += 1 + uint64(n.r.IntN(int(n.last-n.commit)))
		say("A", "commit", n.commit)
	}
}

// apply feeds committed entries, read back from the log, to the FSM.
func (n *node) apply() error {
	applied := n.fsm.AppliedIndex()
	if applied >= n.commit {
		return nil
	}
	to := min(n.commit, applied+1+uint64(n.r.IntN(128)))
	logs := make([]*raft.Log, 0, to-applied)
	for i := applied + 1; i <= to; i++ {
		l := new(raft.Log)
		if err := n.log.GetLog(i, l); err != nil {
			return fmt.Errorf("read committed entry %d (log %d..%d): %w", i, n.first, n.last, err)
		}
		logs = append(logs, l)
	}
	return do("apply", []any{applied + 1, to}, func() ([]any, error) {
		n.fsm.ApplyBatch(logs)
		if got := n.fsm.AppliedIndex(); got != to {
			return nil, fmt.Errorf("applied index %d after the batch", got)
		}
		return nil, nil
	})
}

// snapshot persists the FSM's state into the snapshot store, as raft's
// snapshot goroutine does; Persist closes the sink, which reaps old ones.
func (n *node) snapshot() error {
	index := n.fsm.AppliedIndex()
	if index == 0 || index == n.snap.Index {
		return nil
	}
	term, err := n.termAt(index)
	if err != nil {
		return err
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "n1"}}}
	return do("snap", []any{index, term}, func() ([]any, error) {
		snap, err := n.fsm.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("fsm snapshot: %w", err)
		}
		defer snap.Release()
		sink, err := n.snaps.Create(1, index, term, conf, 1, n.trans)
		if err != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
		hs := &hashingSink{SnapshotSink: sink, h: sha256.New()}
		if err := snap.Persist(hs); err != nil {
			return nil, fmt.Errorf("persist: %w", err)
		}
		n.snap = raft.SnapshotMeta{ID: sink.ID(), Index: index, Term: term}
		return []any{sink.ID(), sum(hs.h)}, nil
	})
}

func (n *node) termAt(index uint64) (uint64, error) {
	if index == n.snap.Index {
		return n.snap.Term, nil
	}
	var l raft.Log
	if err := n.log.GetLog(index, &l); err != nil {
		return 0, fmt.Errorf("term of applied entry %d: %w", index, err)
	}
	return l.Term, nil
}

// restore replaces the FSM's state with a snapshot's, as raft does at
// start-up and when a leader installs one, then checks that the state is
// the snapshot's.
func (n *node) restore(m *raft.SnapshotMeta) error {
	return do("restore", []any{m.ID, m.Index}, func() ([]any, error) {
		_, rc, err := n.snaps.Open(m.ID)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		state, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if err := n.fsm.Restore(io.NopCloser(bytes.NewReader(state))); err != nil {
			return nil, err
		}
		n.snap = *m
		applied := n.fsm.AppliedIndex()
		if applied == m.Index {
			var now bytes.Buffer
			if _, err := n.fsm.WriteSnapshot(&now); err != nil {
				return nil, fmt.Errorf("read the state back: %w", err)
			}
			if !bytes.Equal(now.Bytes(), state) {
				return nil, errors.New("the FSM's state after the restore is not the snapshot's")
			}
		}
		return []any{applied}, nil
	})
}

// checkBounds compares the store's bounds with what the node's calls made
// them, while it runs.
func (n *node) checkBounds() error {
	first, err1 := n.log.FirstIndex()
	last, err2 := n.log.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("read log bounds: %w", err)
	}
	if first != n.first || last != n.last {
		return fmt.Errorf("log bounds %d..%d, want %d..%d", first, last, n.first, n.last)
	}
	return nil
}

// hashingSink digests what is written to a snapshot, so the parent can
// compare it with the reference state.
type hashingSink struct {
	raft.SnapshotSink
	h hash.Hash
}

func (s *hashingSink) Write(p []byte) (int, error) {
	s.h.Write(p)
	return s.SnapshotSink.Write(p)
}
