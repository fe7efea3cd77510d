//go:build unix

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes the data dir for this process: a second node started on
// it would share the raft log and the state machine with the first (and
// the start-up repairs of either could touch the other's files). The lock
// goes with the process, also when it is killed.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "raftkv.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raftstore: lock the data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("raftstore: data dir %s is in use by another process (%w)", dir, err)
	}
	return f, nil
}
