package fsm

import (
	"os"
	"path/filepath"
	"strings"
)

// removeEmptyLogFiles deletes the empty memtable and value-log files a crash
// can leave between their creation and their first write: Badger's Open
// fails on them ("Create a new file", dgraph-io/badger#2207). They hold
// nothing.
func removeEmptyLogFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".mem") && !strings.HasSuffix(e.Name(), ".vlog") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoringMarker, in the store's dir, says a restore of range 0 is under
// way (restoringMarkerName: of another range): Badger's
// DropAll deletes memtables and tables one by one, so a crash during a
// restore leaves a state that belongs to no log index (possibly with an
// old, non-zero applied index). A node that finds the marker at open drops
// everything: raft then restores the newest snapshot (which it persisted
// before the restore began) and replays the log after it.
const restoringMarker = "RESTORING"

func markRestoring(dir string, id uint64) error {
	f, err := os.Create(filepath.Join(dir, restoringMarkerName(id)))
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(dir)
}

func restoring(dir string, id uint64) bool {
	_, err := os.Stat(filepath.Join(dir, restoringMarkerName(id)))
	return err == nil
}

func doneRestoring(dir string, id uint64) error {
	if err := os.Remove(filepath.Join(dir, restoringMarkerName(id))); err != nil && !os.IsNotExist(err) {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
