//go:build !linux

package diskguard

import (
	"math"
	"os"
)

// Elsewhere than on Linux the reserve is written out, memory-mapped files
// are not allocated ahead (a full disk is caught by ENOSPC only), and the
// free space is not watched.

func fallocate(*os.File, int64) error { return errNoFallocate }

func allocateHoles(*os.File, int64) error { return nil }

func statfsAvailable(string) (uint64, error) { return math.MaxUint64, nil }
