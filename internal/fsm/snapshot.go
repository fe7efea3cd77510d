package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// Snapshot stream format:
//
//	header  := magic:"RKVSNAP1" applied:uvarint
//	record  := 1:byte key:bytes value:bytes      (a raw Badger key and value)
//	trailer := 0:byte count:uvarint crc32c:4 bytes (of everything before the crc)
//
// Records are every Badger key of the range (keyspace.go: the user keys of
// its span, its range-local state) except the applied index, which the
// header carries, so new kinds of replicated state are snapshotted without
// changing the format. An applied index of 0 marks a snapshot from another history
// (an operator's restore): see Restore.
var snapMagic = []byte("RKVSNAP1")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot implements raft.FSM. It only opens a Badger read transaction: the
// copy happens in Persist, concurrently with new applies, from that
// point-in-time view.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{f: f, txn: f.db.NewTransaction(false), span: f.span.Load(), applied: f.applied.Load()}, nil
}

type snapshot struct {
	f       *FSM
	txn     *badger.Txn
	span    *rangemap.Descriptor
	applied uint64
}

// Persist holds the read lock while it copies: Restore's DropAll deletes
// value-log files that an open iterator may still be reading.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	s.f.mu.RLock()
	err := s.f.writeSnapshot(s.txn, s.span, s.applied, sink)
	s.f.mu.RUnlock()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot at %d: %w", s.applied, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("fsm: close snapshot sink: %w", err)
	}
	return nil
}

func (s *snapshot) Release() { s.txn.Discard() }

// WriteSnapshot writes the current state in snapshot format (operators'
// backups) and returns the applied index it reflects. It holds the read
// lock throughout (see Persist): give it a fast writer, a local file, not
// a network client.
func (f *FSM) WriteSnapshot(w io.Writer) (uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	txn := f.db.NewTransaction(false)
	defer txn.Discard()
	applied := f.applied.Load()
	return applied, f.writeSnapshot(txn, f.span.Load(), applied, w)
}

// Reset drops all of the range's state. For a node whose raft state is
// gone while its FSM remains: entries of the new history must not be
// skipped as "applied".
func (f *FSM) Reset() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.drop(); err != nil {
		return fmt.Errorf("fsm: reset: %w", err)
	}
	if err := f.db.View(f.loadMeta); err != nil {
		return fmt.Errorf("fsm: reset: %w", err)
	}
	if f.span.Load() == nil { // until a snapshot brings its descriptor, the range owns no key
		f.span.Store(&rangemap.Descriptor{ID: f.ks.id, Start: "\x00", End: "\x00"})
	}
	f.advance(0)
	return nil
}

// drop deletes the range's state; f.mu is held. Range 0 alone in its store
// drops the whole database at once (DropAll, which also frees the files);
// any other range deletes its keys.
func (f *FSM) drop() error {
	if span := f.span.Load(); f.ks.id == 0 && span.Start == "" && span.End == "" {
		others, err := f.store.hasRanges()
		if err != nil {
			return err
		}
		if !others {
			return f.db.DropAll()
		}
	}
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	err := f.db.View(func(txn *badger.Txn) error {
		return f.eachKey(txn, f.span.Load(), false, func(item *badger.Item) error {
			return wb.Delete(item.KeyCopy(nil))
		})
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}

// eachKey calls fn with every Badger item of the range in txn: the user
// keys of span and the range-local state.
func (f *FSM) eachKey(txn *badger.Txn, span *rangemap.Descriptor, values bool, fn func(*badger.Item) error) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = values
	it := txn.NewIterator(opts)
	defer it.Close()
	for _, seg := range f.ks.segments(span) {
		for it.Seek(seg[0]); it.Valid(); it.Next() {
			if seg[1] != nil && bytes.Compare(it.Item().Key(), seg[1]) >= 0 {
				break
			}
			if err := fn(it.Item()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *FSM) writeSnapshot(txn *badger.Txn, span *rangemap.Descriptor, applied uint64, w io.Writer) error {
	sw := newStreamWriter(w, applied)
	// The descriptor goes first, so that a replica can tell from the first
	// bytes whether it can take the snapshot (CheckIncoming).
	desc := f.ks.local(metaRange)
	if item, err := txn.Get(desc); err == nil {
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read the descriptor: %w", err)
		}
		sw.record(desc, v)
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("read the descriptor: %w", err)
	}
	skip := f.ks.local(metaApplied)
	err := f.eachKey(txn, span, true, func(item *badger.Item) error {
		if bytes.Equal(item.Key(), skip) || bytes.Equal(item.Key(), desc) {
			return nil
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read %q: %w", item.Key(), err)
		}
		sw.record(item.Key(), v)
		return sw.err
	})
	if err != nil {
		return err
	}
	return sw.finish()
}

// CopyForRestore checks a snapshot stream from src (framing, count,
// checksum) and writes it to dst marked as foreign (applied index 0), so
// that it can be restored into a cluster with a different history.
func CopyForRestore(dst io.Writer, src io.Reader) error {
	var sw *streamWriter
	_, err := readSnapshot(src, func(uint64) (bool, error) {
		sw = newStreamWriter(dst, 0)
		return true, nil
	}, func(k, v []byte) error {
		if bytes.Equal(k, metaOversized) || bytes.HasPrefix(k, rangeMetaPrefix) || bytes.Equal(k, metaLogVersion) {
			return nil // a crash marker of the source, its routing copy of its range map, what its servers read
		}
		sw.record(k, v)
		return sw.err
	})
	if err != nil {
		return fmt.Errorf("%w: not a valid raftkv snapshot: %v", kv.ErrInvalid, err)
	}
	return sw.finish()
}

// Restore implements raft.FSM: it replaces all state with the snapshot's.
// Keys absent from the snapshot are gone afterwards. A marker file covers
// the restore from before the old state is dropped until the new one is
// synced: a crash in between leaves a state of no log index (Badger drops
// the old state a file at a time), which the next Open drops whole, so
// that raft restores the snapshot again.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	defer f.ReleaseClaim()
	src := bufio.NewReaderSize(rc, SnapshotHeadBytes)
	if isBirthSnapshot(src) {
		return f.restoreBirth()
	}
	head, _ := src.Peek(SnapshotHeadBytes)
	if !f.resuming.Load() {
		if err := f.CheckIncoming(head); err != nil {
			return fmt.Errorf("fsm: restore: %w", err)
		}
	}
	// A piece of a backup cut along the ranges (restore.go) leaves the
	// range its own descriptor, unless the range lost it (a restore cut
	// short): then the piece's stands.
	piece := f.ks.local(metaRange)
	live := f.span.Load().Clone()
	keepLive := !live.Empty() && (f.ks.id != 0 || live.Generation > 0)
	_, isPiece, _ := pieceDescriptor(head, f.ks)
	var wb *badger.WriteBatch
	var prevApplied, prevFloor, prevRangeIDs, prevLogVersion uint64
	locked, foreignPiece := false, false
	defer func() {
		if wb != nil {
			wb.Cancel()
		}
		if locked {
			f.mu.Unlock()
		}
	}()
	applied, err := readSnapshot(src, func(applied uint64) (bool, error) {
		// Keep newer local state at start-up; never for a foreign snapshot
		// (0): a crash in the middle of restoring one leaves applied index 0
		// too, and only restoring again repairs that.
		if f.resuming.Load() && applied > 0 && f.applied.Load() >= applied {
			f.logger.Info("keeping local state, it is newer than the snapshot", "applied", f.applied.Load(), "snapshot", applied)
			return false, nil
		}
		// A foreign snapshot at start-up: the restore finished here (no
		// marker: Store.Range reset a state a restore left half done) and
		// entries after it applied, whose raft indexes are past it.
		if from := f.resumeFrom.Load(); f.resuming.Load() && applied == 0 && from > 0 && f.applied.Load() >= from {
			f.logger.Info("keeping local state, it is newer than the restored backup", "applied", f.applied.Load(), "snapshot", from)
			return false, nil
		}
		if applied == 0 && !f.resuming.Load() {
			// A whole-keyspace backup restored into one range of several
			// would put the other ranges' keys in it; a piece belongs to
			// the range of its span only.
			if err := f.CheckRestore(head); err != nil {
				return false, err
			}
		}
		foreignPiece = applied == 0 && isPiece && keepLive
		f.mu.Lock()
		locked = true
		prevApplied = f.LastIndex() // in indexes handed out: the floor, once counted
		prevLogVersion = f.logVersion.Load()
		f.metaMu.Lock()
		prevFloor = f.floor
		f.metaMu.Unlock()
		if f.ks.id == 0 {
			if err := f.db.View(func(txn *badger.Txn) (err error) {
				prevRangeIDs, err = readUint(txn, metaRangeIDs)
				return err
			}); err != nil {
				return false, fmt.Errorf("read the last range ID: %w", err)
			}
		}
		f.applied.Store(0)
		if err := markRestoring(f.store.dir, f.ks.id); err != nil {
			return false, fmt.Errorf("mark the restore: %w", err)
		}
		if err := f.drop(); err != nil {
			return false, fmt.Errorf("drop old state: %w", err)
		}
		wb = f.db.NewWriteBatch()
		return true, nil
	}, func(k, v []byte) error {
		if !f.ks.mayHold(k) {
			return fmt.Errorf("key %q belongs to another range than %d", k, f.ks.id)
		}
		if foreignPiece && bytes.Equal(k, piece) {
			return nil
		}
		return wb.Set(k, v)
	})
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if wb == nil {
		return nil // kept the newer local state
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("fsm: restore: flush: %w", err)
	}
	wb = nil
	// A foreign snapshot (applied index 0) carries another history's
	// indexes: raise the reaped mark to what this node had, so query
	// indexes never go backwards for its clients.
	err = f.db.Update(func(txn *badger.Txn) error {
		if foreignPiece {
			if err := txn.Set(piece, rangemap.AppendDescriptor(nil, live)); err != nil {
				return err
			}
		}
		if applied == 0 {
			reaped, err := readUint(txn, f.ks.local(metaReaped))
			if err != nil {
				return err
			}
			if err := txn.Set(f.ks.local(metaReaped), uintBytes(max(reaped, prevApplied))); err != nil {
				return err
			}
			// A range that counted its own indexes goes on doing so, from
			// above what it handed out before.
			if prevFloor > 0 {
				floor, err := readUint(txn, f.ks.local(metaFloor))
				if err != nil {
					return err
				}
				if err := txn.Set(f.ks.local(metaFloor), uintBytes(max(floor, prevFloor))); err != nil {
					return err
				}
			}
			// What this range's log showed its servers read stands; a
			// backup's log says nothing about them.
			if prevLogVersion > 0 {
				err = txn.Set(f.ks.local(metaLogVersion), uintBytes(prevLogVersion))
			} else {
				err = txn.Delete(f.ks.local(metaLogVersion))
			}
			if err != nil {
				return err
			}
			// Range IDs this cluster handed out are never handed out again,
			// whatever the backup's count.
			if prevRangeIDs > 0 {
				ids, err := readUint(txn, metaRangeIDs)
				if err != nil {
					return err
				}
				if err := txn.Set(metaRangeIDs, uintBytes(max(ids, prevRangeIDs))); err != nil {
					return err
				}
			}
		}
		return txn.Set(f.ks.local(metaApplied), uintBytes(applied))
	})
	if err == nil {
		err = f.db.View(f.loadMeta)
	}
	if err == nil {
		err = f.db.Sync()
	}
	if err == nil {
		err = doneRestoring(f.store.dir, f.ks.id)
	}
	if err != nil {
		return fmt.Errorf("fsm: restore: finish (applied index, sync, marker): %w", err)
	}
	f.advance(applied)
	if f.notify != nil {
		f.notify.AllChanged()
	}
	f.logger.Info("restored snapshot", "applied", applied)
	if hook := f.onRestored.Load(); hook != nil {
		(*hook)()
	}
	return nil
}

// readSnapshot parses a stream: header gets the applied index and says
// whether to read on; record gets every (key, value). The count and the
// checksum are verified at the end.
func readSnapshot(src io.Reader, header func(applied uint64) (bool, error), record func(k, v []byte) error) (uint64, error) {
	r := &snapReader{r: bufio.NewReaderSize(src, 256<<10), crc: crc32.New(crcTable)}
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return 0, fmt.Errorf("not a raftkv snapshot: too short (%w)", err)
	}
	if !bytes.Equal(magic, snapMagic) {
		return 0, errors.New("not a raftkv snapshot: it does not start with raftkv's header")
	}
	applied, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("header: %w", err)
	}
	if more, err := header(applied); !more || err != nil {
		return applied, err
	}
	var count uint64
	for {
		tag, err := r.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("record %d: %w", count, err)
		}
		if tag == 0 {
			break
		}
		if tag != 1 {
			return 0, fmt.Errorf("record %d: unknown tag %d", count, tag)
		}
		k, err := r.readBytes()
		if err != nil {
			return 0, fmt.Errorf("record %d key: %w", count, err)
		}
		v, err := r.readBytes()
		if err != nil {
			return 0, fmt.Errorf("record %d value: %w", count, err)
		}
		if err := record(k, v); err != nil {
			return 0, fmt.Errorf("record %d: %w", count, err)
		}
		count++
	}
	want, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("trailer after %d records: %w", count, err)
	}
	if want != count {
		return 0, fmt.Errorf("trailer says %d records, read %d", want, count)
	}
	sum := r.crc.Sum32()
	var got [4]byte
	if _, err := io.ReadFull(r.r, got[:]); err != nil {
		return 0, fmt.Errorf("checksum: %w", err)
	}
	if binary.BigEndian.Uint32(got[:]) != sum {
		return 0, errors.New("checksum mismatch: the snapshot is damaged")
	}
	return applied, nil
}

// streamWriter writes the snapshot format; the first error sticks.
type streamWriter struct {
	w       io.Writer
	bw      *bufio.Writer
	crc     hash.Hash32
	count   uint64
	scratch []byte
	err     error
}

func newStreamWriter(w io.Writer, applied uint64) *streamWriter {
	crc := crc32.New(crcTable)
	sw := &streamWriter{w: w, crc: crc, bw: bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)}
	sw.write(append(append([]byte(nil), snapMagic...), binary.AppendUvarint(nil, applied)...))
	return sw
}

func (s *streamWriter) write(b []byte) {
	if s.err == nil {
		_, s.err = s.bw.Write(b)
	}
}

func (s *streamWriter) record(k, v []byte) {
	s.scratch = appendBytes(append(s.scratch[:0], 1), k)
	s.scratch = binary.AppendUvarint(s.scratch, uint64(len(v)))
	s.write(s.scratch)
	s.write(v)
	s.count++
}

func (s *streamWriter) finish() error {
	s.write(binary.AppendUvarint([]byte{0}, s.count))
	if s.err == nil {
		s.err = s.bw.Flush()
	}
	if s.err == nil {
		_, s.err = s.w.Write(binary.BigEndian.AppendUint32(nil, s.crc.Sum32()))
	}
	return s.err
}

// snapReader reads the stream while feeding the checksum.
type snapReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (s *snapReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.crc.Write(p[:n])
	return n, err
}

func (s *snapReader) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err == nil {
		s.crc.Write([]byte{b})
	}
	return b, err
}

const maxSnapField = 64 << 20

func (s *snapReader) readBytes() ([]byte, error) {
	n, err := binary.ReadUvarint(s)
	if err != nil {
		return nil, err
	}
	if n > maxSnapField {
		return nil, errors.New("field too large")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s, b); err != nil {
		return nil, err
	}
	return b, nil
}
