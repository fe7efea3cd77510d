package crashtest

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/logstore"
)

// The child process is a node's storage under the workload. It reports on
// stdout, one line each, written before and after every storage call:
//
//	O <observation json>   what it found on opening the data dir; then it
//	                       waits for a line on stdin
//	R                      ready: start-up and the workload begin
//	B <op> <args>          a call begins
//	A <op> <args>          it returned without error: acknowledged
//	F <error>              something failed while running
//
// An "A" line is written only after the call returned, and a kill can land
// between any two lines; so at most one op (the last "B") is in doubt.
const (
	envMode   = "RAFTKV_CRASHTEST_MODE" // "run", or "observe" (report and exit)
	envDir    = "RAFTKV_CRASHTEST_DIR"
	envKind   = "RAFTKV_CRASHTEST_KIND"
	envSeed   = "RAFTKV_CRASHTEST_SEED"
	envCommit = "RAFTKV_CRASHTEST_COMMIT" // the highest index known committed
)

const (
	// segmentBytes is small so that segments are sealed and rotated every
	// few appends, and suffixes are cleared across segment boundaries.
	segmentBytes = 32 << 10
	retain       = 2 // snapshots kept, as raftstore keeps
)

type node struct {
	r     *rand.Rand
	log   logstore.Store
	snaps *raft.FileSnapshotStore
	fsm   *fsm.FSM
	trans raft.Transport // only encodes the snapshot's peers

	first, last uint64 // the log's bounds (0, 0: empty)
	next        uint64 // the index of the next append
	term        uint64
	commit      uint64
	snap        raft.SnapshotMeta // the latest snapshot taken or restored
}

func childMain() int {
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	commit, _ := strconv.ParseUint(os.Getenv(envCommit), 10, 64)
	n := &node{r: rand.New(rand.NewPCG(seed, 0x5eed)), commit: commit}
	_, n.trans = raft.NewInmemTransport("n1")
	obs := n.open(os.Getenv(envDir), logstore.Kind(os.Getenv(envKind)))
	b, err := json.Marshal(obs)
	if err != nil {
		say("F", err)
		return 1
	}
	say("O", string(b))
	// The parent judges what was found before the workload may change it.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil || len(obs.Problems) > 0 || os.Getenv(envMode) == "observe" {
		n.close()
		return 0
	}
	say("R") // a kill may land from here on, the start-up restore included
	if err := n.start(); err != nil {
		say("F", "start:", err)
		return 1
	}
	for {
		if err := n.step(); err != nil {
			say("F", err)
			return 1
		}
	}
}

// say writes one line in one write(2): nothing is buffered in the process,
// so a line written before the kill reaches the parent.
func say(words ...any) { fmt.Fprintln(os.Stdout, words...) }

// open opens the storage as a node does at start-up and observes it.
func (n *node) open(dir string, kind logstore.Kind) (obs observation) {
	defer func() {
		if p := recover(); p != nil {
			obs.problem("panic: %v\n%s", p, debug.Stack())
		}
	}()
	if k, err := logstore.Choose(dir, kind); err != nil || k != kind {
		obs.problem("logstore.Choose(%s) = %q, %v", kind, k, err)
		return obs
	}
	var err error
	n.log, err = logstore.Open(dir, kind, hclog.NewNullLogger(), logstore.Options{SegmentBytes: segmentBytes})
	if err != nil {
		obs.problem("open log store: %v", err)
		return obs
	}
	obs.readLog(n.log)
	obs.readStable(n.log)
	if n.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, retain, hclog.NewNullLogger()); err != nil {
		obs.problem("open snapshot store: %v", err)
		return obs
	}
	obs.readSnapshots(n.snaps, dir)
	if n.fsm, err = fsm.Open(filepath.Join(dir, "fsm"), fsm.Options{Small: true}); err != nil {
		obs.problem("open fsm: %v", err)
		return obs
	}
	obs.Applied = n.fsm.AppliedIndex()
	h := sha256.New()
	if _, err := n.fsm.WriteSnapshot(h); err != nil {
		obs.problem("read fsm state: %v", err)
	}
	obs.FSM = sum(h)
	n.first, n.last = obs.First, obs.Last
	term, _ := strconv.ParseUint(obs.Stable[string(keyCurrentTerm)], 10, 64)
	n.term = max(term, 1)
	return obs
}

func (n *node) close() {
	if n.fsm != nil {
		n.fsm.Close()
	}
	if n.log != nil {
		n.log.Close()
	}
}

// start restores the newest snapshot, as raft does at start-up; the FSM
// keeps its own state when it is newer. (All listed snapshots must open:
// the parent has checked.)
func (n *node) start() error {
	metas, err := n.snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) > 0 {
		n.fsm.SetResuming(true)
		err := n.restore(metas[0])
		n.fsm.SetResuming(false)
		if err != nil {
			return err
		}
	}
	switch {
	case n.last > 0:
		n.next = n.last + 1
	default:
		n.next = max(n.commit, n.fsm.AppliedIndex(), n.snap.Index) + 1
	}
	if n.last > 0 {
		var l raft.Log
		if err := n.log.GetLog(n.last, &l); err != nil {
			return fmt.Errorf("read last entry: %w", err)
		}
		n.term = max(n.term, l.Term)
	}
	return nil
}
