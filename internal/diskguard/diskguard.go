// Package diskguard keeps a node alive when its disk fills up.
//
// The libraries under a node do not survive a full disk: raft panics when
// it cannot persist a new term, the state machine stops (fail-stop) when
// Badger cannot commit, and Badger writes through memory-mapped files, where
// a page that cannot be allocated kills the process with SIGBUS (Badger
// #1682, #1801). So the guard keeps a reserve: a file of Reserve bytes,
// allocated up front, in the data dir. When the file system runs low
// (less than the low mark available) or a writer meets ENOSPC, the guard
// deletes the file, so that the node's own small writes (a term, a vote, a
// leader's barrier, the applied index) still find room, and reports the
// disk full: the node then refuses new writes from clients (HTTP 507) until
// space is freed and the reserve is allocated again.
//
// The file that a library maps and fills later (Badger's memtable file)
// is kept allocated too (Keep), so that writing to it never needs a block
// the disk no longer has.
package diskguard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ReserveFile is the reserve's name in the data dir.
const ReserveFile = "reserved-space"

// Guard watches one data dir's file system.
type Guard struct {
	dir     string
	reserve int64
	low     int64 // below this available, the disk is full
	logger  *slog.Logger
	keep    []Keep
	// available reports the bytes available to this process on dir's file
	// system (statfs; a fake in tests).
	available func(dir string) (uint64, error)

	mu     sync.Mutex // serialises changes to the reserve
	full   atomic.Bool
	onFull []func(bool)
}

// Options tune a guard.
type Options struct {
	// Reserve is the size of the reserve (0: DefaultReserve).
	Reserve int64
	// Headroom is the space a writer may need in one piece (a new WAL
	// segment): the disk is full once less than that, or a quarter of the
	// reserve, is available.
	Headroom int64
	// Keep names files whose space is allocated as soon as the guard sees
	// them.
	Keep   []Keep
	Logger *slog.Logger
	// Available replaces statfs (tests).
	Available func(dir string) (uint64, error)
}

// Keep allocates the first Part (0..1] of the newest file (by name) that
// matches Pattern, a glob relative to the data dir: the one a library is
// filling through a memory map.
type Keep struct {
	Pattern string
	Part    float64
}

// DefaultReserve covers a raft-wal segment (64 MiB) and a Badger memtable
// flush.
const DefaultReserve = 128 << 20

// Open starts guarding dir: it allocates the reserve if the file system
// has room for it (and reports the disk full otherwise).
func Open(dir string, opts Options) (*Guard, error) {
	g := &Guard{dir: dir, reserve: opts.Reserve, logger: opts.Logger, keep: opts.Keep, available: opts.Available}
	if g.reserve <= 0 {
		g.reserve = DefaultReserve
	}
	g.low = max(g.reserve/4, opts.Headroom)
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	if g.available == nil {
		g.available = statfsAvailable
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("diskguard: %w", err)
	}
	g.Check()
	return g, nil
}

// OnChange registers f to hear every change of Full, and calls it at once
// with the current state. f runs with the guard's lock held: it must not
// call the guard.
func (g *Guard) OnChange(f func(full bool)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.onFull = append(g.onFull, f)
	f(g.full.Load())
}

// Full reports whether the disk is full: the reserve has been given back.
func (g *Guard) Full() bool { return g.full.Load() }

// Run checks the disk every interval until stop closes.
func (g *Guard) Run(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.Check()
		}
	}
}

// Check looks at the file system once: below the low mark available, the
// reserve is given back and the disk is full; once the reserve fits again
// with twice the low mark to spare, it is allocated again and the disk is
// not full.
func (g *Guard) Check() {
	g.keepAllocated()
	avail, err := g.available(g.dir)
	if err != nil {
		g.logger.Warn("cannot read the free space of the data dir", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch full := g.full.Load(); {
	case !full && !g.hasReserve():
		g.allocateLocked(avail)
	case !full && avail < uint64(g.low):
		g.releaseLocked(fmt.Sprintf("%d bytes left", avail))
	case full && avail >= uint64(g.reserve+2*g.low):
		g.allocateLocked(avail)
	}
}

// NoSpace is what a writer calls with the error of a failed write: if it
// is ENOSPC, the reserve is given back at once (so that the write can be
// tried again) and the result is true. Some libraries lose the errno on
// the way, and only their text says it.
func (g *Guard) NoSpace(err error) bool {
	if err == nil || !errors.Is(err, syscall.ENOSPC) && !strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked("a write failed: " + err.Error())
	return true
}

func (g *Guard) path() string { return filepath.Join(g.dir, ReserveFile) }

func (g *Guard) hasReserve() bool {
	fi, err := os.Stat(g.path())
	return err == nil && fi.Size() >= g.reserve
}

func (g *Guard) releaseLocked(why string) {
	if err := os.Remove(g.path()); err != nil && !os.IsNotExist(err) {
		g.logger.Error("cannot give back the reserved space", "file", g.path(), "err", err)
	}
	if !g.full.Swap(true) {
		g.logger.Warn("disk full: refusing writes until space is freed", "data_dir", g.dir, "why", why)
		g.notifyLocked(true)
	}
}

// allocateLocked makes the reserve; the disk is full until it exists.
func (g *Guard) allocateLocked(avail uint64) {
	err := allocate(g.path(), g.reserve)
	if err != nil {
		os.Remove(g.path())
		if !g.full.Swap(true) {
			g.logger.Warn("disk full: no room for the reserved space; refusing writes until space is freed",
				"data_dir", g.dir, "available", avail, "reserve", g.reserve, "err", err)
			g.notifyLocked(true)
		}
		return
	}
	if g.full.Swap(false) {
		g.logger.Info("disk has room again: taking writes", "data_dir", g.dir, "available", avail)
		g.notifyLocked(false)
	}
}

func (g *Guard) notifyLocked(full bool) {
	for _, f := range g.onFull {
		f(full)
	}
}

// keepAllocated allocates what Keep says (a no-op where it already is).
func (g *Guard) keepAllocated() {
	for _, k := range g.keep {
		files, _ := filepath.Glob(filepath.Join(g.dir, k.Pattern))
		if len(files) == 0 {
			continue
		}
		newest := slices.Max(files)
		if fi, err := os.Stat(newest); err == nil && fi.Size() > 0 {
			_ = allocateExisting(newest, int64(float64(fi.Size())*k.Part))
		}
	}
}

// allocate creates path with size bytes actually allocated, and syncs it,
// so that its blocks are the node's to give back.
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = fallocate(f, size)
	if errors.Is(err, errNoFallocate) {
		err = writeZeros(f, size)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("allocate %d bytes for %s: %w", size, path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// errNoFallocate: the file system (or the OS) cannot allocate space
// without writing it.
var errNoFallocate = errors.New("fallocate not supported")

func writeZeros(f *os.File, size int64) error {
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			return err
		}
	}
	return nil
}

func allocateExisting(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return allocateHoles(f, size)
}
