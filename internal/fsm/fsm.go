package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Badger key layout. Data keys and metadata live in one keyspace, separated
// by their first byte, so a snapshot is simply "every key but the applied
// index".
var (
	dataPrefix    = []byte("k")
	metaApplied   = []byte("m:applied")   // last raft index applied
	metaConfIndex = []byte("m:confindex") // last raft configuration entry applied
	metaOversized = []byte("m:oversized") // index of a command being applied in pieces
)

func dataKey(key string) []byte {
	b := make([]byte, 0, len(dataPrefix)+len(key))
	return append(append(b, dataPrefix...), key...)
}

// Options tune the Badger instance behind the FSM.
type Options struct {
	Logger *slog.Logger
	// Small sizes Badger for several nodes in one process (tests, example):
	// small memtables, no block cache, small value-log files.
	Small bool
	// Notify, if set, hears about every committed change (watchers).
	Notify ChangeNotifier
}

// FSM is one range's state machine: a raft.BatchingFSM whose state is its
// part of the node's Badger (Store; see keyspace.go). It is safe for
// concurrent reads while raft applies.
type FSM struct {
	store  *Store
	db     *badger.DB
	ks     keyspace
	logger *slog.Logger
	notify ChangeNotifier
	// ownStore: Close closes the store too (Open's single-range FSM).
	ownStore bool

	// span is the range's descriptor as of the last batch applied.
	span atomic.Pointer[rangemap.Descriptor]
	// onSplit hears of every split the range applied, after its commit.
	onSplit atomic.Pointer[func(left, right rangemap.Descriptor)]
	// onRestored hears of every snapshot the range restored.
	onRestored atomic.Pointer[func()]

	// mu is held for reading by readers and for writing by the rare
	// operations that change state in more than one Badger commit (Restore,
	// oversized commands), so that no reader sees a state that belongs to
	// no log index.
	mu sync.RWMutex

	applied   atomic.Uint64
	entries   atomic.Uint64 // applied since open
	confIndex atomic.Uint64
	aclIndex  atomic.Uint64
	// logVersion is the newest entry version the range's log has carried
	// (see LogVersion).
	logVersion atomic.Uint64
	// peerSecret caches PeerSecret once chosen ("" : ask Badger).
	peerSecret atomic.Value
	resuming   atomic.Bool
	resumeFrom atomic.Uint64 // the raft index of the snapshot raft replays at start (see ResumeFrom)

	metaMu    sync.Mutex // guards the bookkeeping below (see batch.go)
	floor     uint64
	clockMode bool
	reaped    uint64
	idemCount int64
	next      map[byte]int64
	lastTime  int64

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever applied advances

	viewMu      sync.Mutex
	viewWaiters map[*viewWaiter]bool
	waiting     atomic.Int64 // len(viewWaiters), read without the lock
}

// ChangeNotifier hears about every committed change, on raft's FSM
// goroutine: it must not block.
type ChangeNotifier interface {
	KeysChanged(keys []string) // keys set or deleted by a committed batch
	SessionsChanged()          // a session was created or destroyed
	AllChanged()               // state replaced by a snapshot
}

var (
	_ raft.BatchingFSM = (*FSM)(nil)
)

// Open opens (or creates) the Badger database in dir and returns range 0's
// state machine, which owns it: a node with one range.
func Open(dir string, opts Options) (*FSM, error) {
	s, err := OpenStore(dir, opts)
	if err != nil {
		return nil, err
	}
	f, err := s.Range(0, opts.Notify)
	if err != nil {
		s.Close()
		return nil, err
	}
	f.ownStore = true
	return f, nil
}

// Close closes the range (and Badger, if Open opened it). Raft must be
// shut down first.
func (f *FSM) Close() error {
	f.store.forget(f.ks.id)
	if !f.ownStore {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store.Close()
}

// ID is the range's ID.
func (f *FSM) ID() uint64 { return f.ks.id }

// Descriptor is the range's descriptor as of the last batch applied.
func (f *FSM) Descriptor() rangemap.Descriptor { return f.span.Load().Clone() }

// AppliedIndex is the last raft index whose effects are in Badger.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// ConfigIndex is the raft index of the last membership change applied.
// (raft's own GetConfiguration does not report it.)
func (f *FSM) ConfigIndex() uint64 { return f.confIndex.Load() }

// SetResuming tells Restore that raft is replaying its latest snapshot at
// start-up. Badger already holds state at least that new if the applied
// index is past the snapshot, and then Restore keeps it instead of
// rebuilding from the snapshot.
func (f *FSM) SetResuming(v bool) { f.resuming.Store(v) }

// ResumeFrom is SetResuming(true), knowing the raft index of the snapshot
// raft replays: an operator's restore (a foreign snapshot, applied index
// 0 in its header) this node finished and applied entries after (its
// applied index at or past that raft index) is kept too, instead of being
// restored again over what came after it (a split, say).
func (f *FSM) ResumeFrom(snapshotIndex uint64) {
	f.resumeFrom.Store(snapshotIndex)
	f.resuming.Store(true)
}

// LogVersion is the newest entry version (EntryVersion's scale) an entry
// of this range's log, as this replica applied it, has been written in.
// In range 0 the leader that wrote it had heard every server report
// reading that version (the other ranges write every kind typed), and a
// server does not go back to a release that reads less, so a later leader
// may write entries of that version without hearing every server again,
// which it cannot while one is down or cut off (package group). Replicas
// that applied the same log agree; a backup restored from elsewhere does
// not bring its log's version, so each replica keeps its own then, which
// can only hold a leader back, never let it write what a server cannot
// read.
func (f *FSM) LogVersion() int { return int(f.logVersion.Load()) }

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: the whole batch goes into one
// Badger transaction together with the new applied index, so a crash leaves
// either all of it or none of it. (A WriteBatch would split a large batch
// into several commits silently and break that.)
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	for start := 0; start < len(logs); {
		start += f.applyRun(logs[start:], out[start:], len(logs)-start)
	}
	return out
}

// applyRun applies up to limit entries in one transaction and returns how
// many it applied (at least one).
func (f *FSM) applyRun(logs []*raft.Log, out []interface{}, limit int) int {
	txn := f.db.NewTransaction(true)
	defer txn.Discard()
	b := f.newBatch(txn)
	applied := f.applied.Load()
	var closedAt uint64 // the index of a close that ends the run
	last := applied
	for i := 0; i < limit; i++ {
		l := logs[i]
		out[i] = nil
		if l.Index <= applied {
			continue // already in Badger: replay after a restart
		}
		last = l.Index
		if l.Type == raft.LogConfiguration {
			b.confIndex = l.Index
			if err := b.noteReplicas(txn, l.Data); errors.Is(err, badger.ErrTxnTooBig) && i > 0 {
				txn.Discard()
				return f.applyRun(logs, out, i) // the rest in a run of its own
			} else if err != nil {
				panic(fmt.Errorf("fsm: apply configuration at index %d: %w", l.Index, err)) // storage failure, as below
			}
			continue
		}
		if l.Type != raft.LogCommand {
			continue
		}
		e, err := DecodeEntry(l.Data)
		if err != nil {
			f.logger.Error("skipping undecodable log entry", "index", l.Index, "err", err)
			out[i] = fmt.Errorf("%w: log entry %d: %v", kv.ErrInvalid, l.Index, err)
			continue
		}
		if next, ok := b.nextIndex(e); ok && f.wantsViewBelow(next) {
			// A read waits for the range as it is before this entry (the
			// first one past its index): end the run here, then capture.
			if i > 0 {
				limit = i
				last = max(applied, logs[i-1].Index)
				break
			}
			f.captureViews(next)
		}
		b.noteForm(l.Data, e)
		res, err := b.apply(txn, l.Index, e, false)
		if err == nil && e.Kind == KindClose {
			// A close ends the run too: the reads waiting at its index see
			// the range right after it.
			closedAt = e.Close.At
			limit = i + 1
		}
		if errors.Is(err, badger.ErrTxnTooBig) {
			txn.Discard()
			if i == 0 {
				out[0] = f.applyOversized(l, e)
				return 1
			}
			return f.applyRun(logs, out, i)
		}
		if err != nil {
			panic(fmt.Errorf("fsm: apply index %d: %w", l.Index, err)) // storage failure: fail-stop, replay on restart
		}
		out[i] = res
	}
	if last == applied {
		return limit
	}
	if err := b.writeMeta(last); err != nil {
		if !errors.Is(err, badger.ErrTxnTooBig) {
			panic(fmt.Errorf("fsm: write applied index %d: %w", last, err))
		}
		txn.Discard()
		if limit > 1 {
			return f.applyRun(logs, out, limit-1)
		}
		// One entry that filled the transaction to the brim: apply it in pieces.
		e, err := DecodeEntry(logs[0].Data)
		if err != nil {
			panic(fmt.Errorf("fsm: entry %d no longer decodes: %w", logs[0].Index, err))
		}
		out[0] = f.applyOversized(logs[0], e)
		return 1
	}
	if err := txn.Commit(); err != nil {
		panic(fmt.Errorf("fsm: commit up to index %d: %w", last, err))
	}
	f.publish(b, last)
	if closedAt != 0 {
		f.captureViews(closedAt + 1)
	}
	return limit
}

// applyOversized applies an entry whose writes do not fit in one Badger
// transaction (typically a delete-tree over many keys, or the destroy of a
// session holding many). For a KV command it marks the index as in
// progress, writes the changes through a WriteBatch (which splits as
// needed), then records the applied index. Readers are held off meanwhile.
// If the process dies half way, the replay finds the marker and re-runs the
// command without its checks, since the checks had passed the first time
// and part of its writes may already be visible to them. Only KV commands
// are marked and forced, as before typed entries; an entry of another kind
// cut short by a crash is applied again as it is.
func (f *FSM) applyOversized(l *raft.Log, e *Entry) interface{} {
	if e.Kind == KindSplit {
		return f.applySplitInPieces(l, e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var marker uint64
	err := f.db.View(func(txn *badger.Txn) (err error) {
		marker, err = readUint(txn, f.ks.local(metaOversized))
		return err
	})
	if err != nil {
		panic(fmt.Errorf("fsm: read oversized marker: %w", err))
	}
	force := marker == l.Index
	view := f.db.NewTransaction(false)
	defer view.Discard()
	// Mark only a command that will write: the replay skips checks.
	if e.Kind == KindKV && e.KV != nil {
		dry, err := execute(f.overlay(view), l.Index, e.KV, force)
		if err != nil {
			panic(fmt.Errorf("fsm: evaluate oversized entry %d: %w", l.Index, err))
		}
		if dry.OK && !force {
			if err := f.db.Update(func(txn *badger.Txn) error { return txn.Set(f.ks.local(metaOversized), uintBytes(l.Index)) }); err != nil {
				panic(fmt.Errorf("fsm: mark oversized entry %d: %w", l.Index, err))
			}
		}
	}
	// Writes go to a WriteBatch, which splits as needed.
	b := f.newBatch(view)
	b.noteForm(l.Data, e)
	wb := f.db.NewWriteBatch()
	res, err := b.apply(wb, l.Index, e, force)
	if err == nil {
		err = wb.Flush()
	} else {
		wb.Cancel()
	}
	if err != nil {
		panic(fmt.Errorf("fsm: write oversized entry %d: %w", l.Index, err))
	}
	err = f.db.Update(func(txn *badger.Txn) error {
		b.txn = txn
		if err := txn.Delete(f.ks.local(metaOversized)); err != nil {
			return err
		}
		return b.writeMeta(l.Index)
	})
	if err != nil {
		panic(fmt.Errorf("fsm: finish oversized entry %d: %w", l.Index, err))
	}
	f.publish(b, l.Index)
	f.logger.Info("applied oversized command in pieces", "index", l.Index)
	return res
}

func (f *FSM) advance(applied uint64) {
	f.applied.Store(applied)
	f.waitMu.Lock()
	close(f.waitCh)
	f.waitCh = make(chan struct{})
	f.waitMu.Unlock()
}

// AppliedChanged returns a channel closed the next time the applied index
// moves; callers re-check their condition and ask again.
func (f *FSM) AppliedChanged() <-chan struct{} {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	return f.waitCh
}

func uintBytes(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func readUint(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("meta key %s has %d bytes", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

// badgerLogger sends Badger's errors and warnings to slog; its info chatter
// is debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...interface{}) {
	b.l.Error(trim(f, a), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...interface{}) {
	b.l.Warn(trim(f, a), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...interface{})  { b.l.Debug(trim(f, a), "component", "badger") }
func (b badgerLogger) Debugf(f string, a ...interface{}) {}

func trim(f string, a []interface{}) string {
	s := fmt.Sprintf(f, a...)
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}
