package fsm

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/raftkv/raftkv/internal/rangemap"
)

// Store is a node's one Badger database, shared by every range the node
// holds (keyspace.go says who owns which keys).
type Store struct {
	db     *badger.DB
	dir    string
	logger *slog.Logger

	mu     sync.Mutex
	ranges map[uint64]*FSM // open ranges
	shut   bool

	scratch bool // see OpenScratch
	// claims are the spans of snapshots being received or restored, by
	// range (see claim).
	claims map[uint64]rangemap.Descriptor
}

// OpenStore opens (or creates) the Badger database in dir, after checking
// its files (damage stops the node with the file's name).
func OpenStore(dir string, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger}).
		WithDetectConflicts(false). // the FSMs are the only writers, each of its own keys
		WithMetricsEnabled(false).
		// Values stay in the LSM tree, whose tables carry checksums that are
		// verified when a table is opened (at start, and after compactions):
		// damage stops the node with the file's name. Badger checks its
		// value log only when it reads a value (and drops the rest of the
		// newest file after a bad entry, taking it for a torn write), so
		// nothing is written there any more (values are at most 512 KiB);
		// what older data dirs hold there is checksummed on every read.
		WithValueThreshold(1 << 20).
		WithChecksumVerificationMode(options.OnTableRead).
		WithVerifyValueChecksum(true)
	if opts.Small {
		bo = bo.WithMemTableSize(8 << 20).
			WithNumMemtables(2).
			WithNumLevelZeroTables(2).
			WithNumLevelZeroTablesStall(8).
			WithCompression(options.None). // no compression: then no block cache is needed
			WithBlockCacheSize(0).
			WithIndexCacheSize(0).
			WithBaseTableSize(1 << 20).
			WithValueLogFileSize(16 << 20).
			WithNumCompactors(2)
	}
	if err := removeEmptyLogFiles(dir); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	if err := verifyManifest(dir); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	if err := verifyTables(dir, bo); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("fsm: open badger in %s: %w", dir, err)
	}
	return &Store{db: db, dir: dir, logger: logger, ranges: map[uint64]*FSM{}}, nil
}

// Range opens the state machine of range id. Range 0 always exists (a new
// store is range 0 over the whole keyspace); any other range exists once a
// split created it.
func (s *Store) Range(id uint64, notify ChangeNotifier) (*FSM, error) {
	return s.open(id, notify, false)
}

// Replica opens the state machine of range id whether or not this node
// holds the range yet: a replica raft traffic made (a node that joined
// after the split, or caught up the parent from a snapshot taken after
// it). Until a snapshot or the split brings its descriptor it holds no
// key (Initialized is false).
func (s *Store) Replica(id uint64, notify ChangeNotifier) (*FSM, error) {
	return s.open(id, notify, true)
}

func (s *Store) open(id uint64, notify ChangeNotifier, uninitialized bool) (*FSM, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return nil, fmt.Errorf("fsm: range %d: the store is closed", id)
	}
	if s.ranges[id] != nil {
		return nil, fmt.Errorf("fsm: range %d is already open", id)
	}
	f := &FSM{store: s, db: s.db, ks: newKeyspace(id), logger: s.logger.With("range", id), notify: notify,
		waitCh: make(chan struct{}), next: map[byte]int64{}}
	if err := s.db.View(f.loadMeta); err != nil {
		return nil, fmt.Errorf("fsm: range %d: read its state: %w", id, err)
	}
	if f.span.Load() == nil && !restoring(s.dir, id) {
		if !uninitialized {
			return nil, fmt.Errorf("fsm: range %d does not exist on this node", id)
		}
		f.span.Store(&rangemap.Descriptor{ID: id, Start: "\x00", End: "\x00"})
	}
	if restoring(s.dir, id) { // a restore cut short, its descriptor maybe with it: raft restores again
		f.logger.Warn("a restore was interrupted: dropping the range's state, to be restored from the newest snapshot and the log")
		if err := f.Reset(); err != nil {
			return nil, err
		}
		if err := doneRestoring(s.dir, id); err != nil {
			return nil, fmt.Errorf("fsm: %w", err)
		}
	}
	s.ranges[id] = f
	s.mu.Unlock()
	// Outside the lock: it may delete many records, and other ranges
	// claim snapshots meanwhile.
	err := f.finishSplit()
	s.mu.Lock()
	if err != nil {
		delete(s.ranges, id)
		return nil, fmt.Errorf("fsm: range %d: finish a split: %w", id, err)
	}
	return f, nil
}

// reload rereads the state of range id, if open, after another range's
// split wrote it (a replica raft traffic made before the split reached
// this node).
func (s *Store) reload(id uint64) {
	s.mu.Lock()
	f := s.ranges[id]
	s.mu.Unlock()
	if f == nil {
		return
	}
	if err := f.db.View(f.loadMeta); err != nil {
		f.logger.Error("cannot read the state the split gave the range", "err", err)
	}
}

func (s *Store) forget(id uint64) {
	s.mu.Lock()
	delete(s.ranges, id)
	delete(s.claims, id)
	s.mu.Unlock()
}

// Close closes Badger. Every range's raft must be shut down first.
func (s *Store) Close() error {
	s.mu.Lock()
	s.shut = true
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("fsm: close badger: %w", err)
	}
	return nil
}

// hasRanges says whether any range but 0 has state in the store.
func (s *Store) hasRanges() (bool, error) {
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = rangeLocalPrefix
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	return found, err
}

// wholeKeyspace is range 0's descriptor before any split.
func wholeKeyspace() *rangemap.Descriptor { return &rangemap.Descriptor{ID: 0} }

func restoringMarkerName(id uint64) string {
	if id == 0 {
		return restoringMarker
	}
	return restoringMarker + "-" + strconv.FormatUint(id, 10)
}

// Ranges returns the descriptors of every range with state in the store,
// range 0 first: what a node restarting must open.
func (s *Store) Ranges() ([]rangemap.Descriptor, error) {
	var out []rangemap.Descriptor
	err := s.db.View(func(txn *badger.Txn) error {
		d, err := readDescriptor(txn, newKeyspace(0))
		if err != nil {
			return err
		}
		out = append(out, *d)
		return eachOtherRange(txn, func(d rangemap.Descriptor) { out = append(out, d) })
	})
	if err != nil {
		return nil, fmt.Errorf("fsm: list ranges: %w", err)
	}
	// A range whose restore was cut short may have lost its descriptor
	// with its state: it exists (its raft log and snapshots do).
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("fsm: list ranges: %w", err)
	}
	for _, e := range entries {
		idText, ok := strings.CutPrefix(e.Name(), restoringMarker+"-")
		id, err := strconv.ParseUint(idText, 10, 64)
		if !ok || err != nil || slices.ContainsFunc(out, func(d rangemap.Descriptor) bool { return d.ID == id }) {
			continue
		}
		out = append(out, rangemap.Descriptor{ID: id, Start: "\x00", End: "\x00"})
	}
	return out, nil
}

// Descriptor returns range id's descriptor as the store holds it (ok
// false: this node holds none of the range).
func (s *Store) Descriptor(id uint64) (d rangemap.Descriptor, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		got, err := readDescriptor(txn, newKeyspace(id))
		if got != nil {
			d, ok = *got, true
		}
		return err
	})
	return d, ok, err
}

// firstOtherStart is the lowest start of a range other than 0 with a
// descriptor in the store (ok false: none).
func firstOtherStart(txn *badger.Txn) (start string, ok bool, err error) {
	err = eachOtherRange(txn, func(d rangemap.Descriptor) {
		if !ok || d.Start < start {
			start, ok = d.Start, true
		}
	})
	return start, ok, err
}

// eachOtherRange calls fn with the descriptor of every range but 0 that
// has one in the store, by ID, seeking from one range's local state to
// the next's.
func eachOtherRange(txn *badger.Txn, fn func(rangemap.Descriptor)) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = rangeLocalPrefix
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); {
		k := it.Item().Key()
		if len(k) < len(rangeLocalPrefix)+8 {
			return fmt.Errorf("range-local key %q too short", k)
		}
		id := binary.BigEndian.Uint64(k[len(rangeLocalPrefix):])
		d, err := readDescriptor(txn, newKeyspace(id))
		if err != nil {
			return err
		}
		if d != nil {
			fn(*d)
		}
		if id == math.MaxUint64 {
			break
		}
		it.Seek(newKeyspace(id + 1).prefix)
	}
	return nil
}

// Split says whether the keyspace of the range's store has been split:
// other ranges have state in it.
func (f *FSM) Split() (bool, error) { return f.store.hasRanges() }
