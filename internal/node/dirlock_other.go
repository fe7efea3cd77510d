//go:build !unix

package node

import (
	"os"
	"path/filepath"
)

// lockDataDir: elsewhere than on Unix, Badger's own lock on the state
// machine's dir is the only one.
func lockDataDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "raftkv.lock"), os.O_CREATE|os.O_RDWR, 0o600)
}
