package integrity

import (
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// LogReader is what Log reads of a raft log store.
type LogReader interface {
	FirstIndex() (uint64, error)
	LastIndex() (uint64, error)
	GetLog(index uint64, log *raft.Log) error
}

// Log reads every entry of an opened log store back: the log must be one
// contiguous run, each entry where its index says (raft panics on a log it
// cannot read back, long after the node started serving).
func Log(name string, logs LogReader) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return damaged(name, "first index: %v", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return damaged(name, "last index: %v", err)
	}
	if last < first && last != 0 {
		return damaged(name, "ends at %d before it starts at %d", last, first)
	}
	for i := first; i <= last && last > 0; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return damaged(name, "entry %d of %d..%d cannot be read: %v", i, first, last, err)
		}
		if l.Index != i {
			return damaged(name, "entry %d is stored as %d", i, l.Index)
		}
	}
	return nil
}

// Bolt checks the page structure of a bbolt file (bbolt keeps checksums of
// its meta pages only; this finds pages that point nowhere or twice).
func Bolt(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return damaged(path, "cannot be opened: %v", err)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return damaged(path, "%v", err)
		}
		return nil
	})
}

// Coverage checks that the log and the newest snapshot cover everything
// the state machine has applied: the log is fsynced before an entry is
// acknowledged and applied, so a state machine ahead of both means entries
// the log had are gone (a damaged or replaced log).
//
// A data dir with neither log nor snapshot has no raft state at all (an
// operator emptied it to rejoin): the state machine is dropped then, not
// trusted.
func Coverage(logName string, first, last, snapshot, applied uint64) error {
	if last == 0 && snapshot == 0 {
		return nil
	}
	if applied > max(last, snapshot) {
		return damaged(logName, "ends at entry %d (newest snapshot: %d), but the state machine applied entries up to %d: the log lost entries",
			last, snapshot, applied)
	}
	if last > 0 && first > snapshot+1 {
		return damaged(logName, "starts at entry %d, but the newest snapshot ends at %d: entries %d..%d are missing",
			first, snapshot, snapshot+1, first-1)
	}
	return nil
}
