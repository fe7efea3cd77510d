package crashtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
)

// observation is what a child finds in the data dir when it opens it, before
// it writes anything: the parent judges it against what was acknowledged.
type observation struct {
	// Problems are failures on their own: an open that failed or panicked,
	// an entry that cannot be read or is not what its term says.
	Problems []string `json:",omitempty"`

	First, Last uint64 // the log's bounds (0, 0: empty)
	Runs        []run  // the terms of First..Last, in order

	Stable map[string]string // stable store values ("" : unset)

	Applied uint64 // the FSM's applied index
	FSM     string // digest of the FSM's state (its snapshot stream)

	Snaps    []snapObs // what the snapshot store lists, newest first
	TmpSnaps int       // unfinished snapshot dirs left behind
}

// run is a stretch of consecutive log entries of one term.
type run struct{ From, To, Term uint64 }

type snapObs struct {
	ID          string
	Index, Term uint64
	Digest      string // of the state stream
	Err         string // Open failed (for example on its CRC)
}

const maxProblems = 8

func (o *observation) problem(format string, args ...any) {
	switch {
	case len(o.Problems) < maxProblems:
		o.Problems = append(o.Problems, fmt.Sprintf(format, args...))
	case len(o.Problems) == maxProblems:
		o.Problems = append(o.Problems, "(more problems not shown)")
	}
}

// readLog reads every entry from FirstIndex to LastIndex, as raft may at any
// time, and checks each against what its index and term say it must be.
func (o *observation) readLog(s raft.LogStore) {
	first, err := s.FirstIndex()
	if err != nil {
		o.problem("FirstIndex: %v", err)
		return
	}
	last, err := s.LastIndex()
	if err != nil {
		o.problem("LastIndex: %v", err)
		return
	}
	o.First, o.Last = first, last
	if first == 0 && last == 0 {
		return
	}
	if first == 0 || first > last {
		o.problem("log bounds %d..%d", first, last)
		return
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			o.problem("GetLog(%d) in %d..%d: %v", i, first, last, err)
			continue
		}
		if diff := sameEntry(&l, entry(i, l.Term)); diff != "" {
			o.problem("entry %d is garbled: %s", i, diff)
			continue
		}
		if n := len(o.Runs); n > 0 && o.Runs[n-1].To == i-1 && o.Runs[n-1].Term == l.Term {
			o.Runs[n-1].To = i
		} else {
			o.Runs = append(o.Runs, run{i, i, l.Term})
		}
	}
}

// Stable store keys, as raft names them.
var (
	keyCurrentTerm  = []byte("CurrentTerm")
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

func (o *observation) readStable(s raft.StableStore) {
	o.Stable = map[string]string{}
	for _, k := range [][]byte{keyCurrentTerm, keyLastVoteTerm} {
		v, err := s.GetUint64(k)
		switch {
		case err != nil && err.Error() != "not found": // raft's own test for an unset key
			o.problem("GetUint64(%s): %v", k, err)
		case v != 0:
			o.Stable[string(k)] = strconv.FormatUint(v, 10)
		}
	}
	v, err := s.Get(keyLastVoteCand)
	if err != nil && err.Error() != "not found" {
		o.problem("Get(%s): %v", keyLastVoteCand, err)
	}
	if len(v) > 0 {
		o.Stable[string(keyLastVoteCand)] = string(v)
	}
}

// readSnapshots opens every snapshot raft would consider at start-up; Open
// verifies the state file's CRC.
func (o *observation) readSnapshots(store *raft.FileSnapshotStore, dir string) {
	metas, err := store.List()
	if err != nil {
		o.problem("list snapshots: %v", err)
		return
	}
	for _, m := range metas {
		s := snapObs{ID: m.ID, Index: m.Index, Term: m.Term}
		if _, rc, err := store.Open(m.ID); err != nil {
			s.Err = err.Error()
		} else {
			s.Digest, err = digestOf(rc)
			rc.Close()
			if err != nil {
				s.Err = err.Error()
			}
		}
		o.Snaps = append(o.Snaps, s)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			o.TmpSnaps++
		}
	}
}

func digestOf(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return sum(h), nil
}

func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil))[:16] }
