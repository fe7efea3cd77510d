package group

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/raftkv/raftkv/internal/integrity"
	"github.com/raftkv/raftkv/internal/logstore"
)

// Before a node starts on its data dir, everything in it is read back and
// checked (package integrity): a node must not vote, replicate or serve
// from damaged files, nor panic on them later. A finding is an error
// wrapping ErrDamaged that names the file.

// checkLogFiles checks the raft log's files, if there are any yet, before
// they are opened.
func checkLogFiles(dataDir string, kind logstore.Kind) error {
	if logstore.Held(dataDir) != kind {
		return nil // a new log (Choose refuses a log of the other kind)
	}
	if kind == logstore.BoltDB {
		return integrity.Bolt(logstore.Path(dataDir, kind))
	}
	return integrity.WAL(logstore.Path(dataDir, kind))
}

// checkLogFitsState reads the opened log back in full, checks the
// snapshots, and checks that the log and the newest snapshot cover what
// the state machine applied.
func checkLogFitsState(dataDir string, kind logstore.Kind, logs integrity.LogReader, applied uint64) error {
	name := logstore.Path(dataDir, kind)
	if err := integrity.Log(name, logs); err != nil {
		return err
	}
	newest, err := integrity.Snapshots(dataDir)
	if err != nil {
		return err
	}
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	return integrity.Coverage(name, first, last, newest, applied)
}

// stateMachineDamage reports a state machine that cannot be opened as
// damage, unless the cause is not its files: another process holds them,
// they cannot be accessed, or the machine is out of something (space,
// file descriptors, memory).
func stateMachineDamage(dir string, err error) error {
	for _, errno := range []error{os.ErrPermission, syscall.ENOSPC, syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EROFS} {
		if errors.Is(err, errno) {
			return fmt.Errorf("raftstore: %w", err)
		}
	}
	if strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return fmt.Errorf("raftstore: %w", err)
	}
	return fmt.Errorf("raftstore: %w", &integrity.Damage{File: dir, Problem: "the state machine (Badger) cannot be opened: " + err.Error()})
}

// removeUnfinishedSnapshots deletes the snapshots a crash left half
// written (snapshots/*.tmp): raft's snapshot store skips them but never
// removes them, and each is a partial copy of the whole state.
func removeUnfinishedSnapshots(dataDir string, logger interface{ Info(string, ...any) }) {
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*.tmp"))
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err == nil {
			logger.Info("removed a snapshot a crash left unfinished", "dir", dir)
		}
	}
}

// unpanic runs fn and turns a panic into an error: a library that meets a
// file it cannot make sense of may panic (raft on a log entry it cannot
// read back), and a node must exit with a reason instead. The checks run
// before should have named any damage; a panic left is reported as such.
func unpanic(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v (if the data dir is damaged, see docs/OPERATIONS.md#damaged-data)", what, r)
		}
	}()
	return fn()
}
