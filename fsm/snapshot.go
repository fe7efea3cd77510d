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
)

// Snapshot stream format:
//
//	header  := magic:"RKVSNAP1" applied:uvarint
//	record  := 1:byte key:bytes value:bytes      (a raw Badger key and value)
//	trailer := 0:byte count:uvarint crc32c:4 bytes (of everything before the crc)
//
// Records are every Badger key except the applied index, which the header
// carries, so new kinds of replicated state are snapshotted without changing
// the format.
var snapMagic = []byte("RKVSNAP1")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot implements raft.FSM. It only opens a Badger read transaction: the
// copy happens in Persist, concurrently with new applies, from that
// point-in-time view.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{txn: f.db.NewTransaction(false), applied: f.applied.Load()}, nil
}

type snapshot struct {
	txn     *badger.Txn
	applied uint64
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.txn, s.applied, sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot at %d: %w", s.applied, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("fsm: close snapshot sink: %w", err)
	}
	return nil
}

func (s *snapshot) Release() { s.txn.Discard() }

// WriteSnapshot streams the current state in snapshot format (used by operators'
// backups as well as raft).
func (f *FSM) WriteSnapshot(w io.Writer) error {
	txn := f.db.NewTransaction(false)
	defer txn.Discard()
	return writeSnapshot(txn, f.applied.Load(), w)
}

func writeSnapshot(txn *badger.Txn, applied uint64, w io.Writer) error {
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)
	var scratch []byte
	scratch = append(append(scratch[:0], snapMagic...), binary.AppendUvarint(nil, applied)...)
	if _, err := bw.Write(scratch); err != nil {
		return err
	}
	it := txn.NewIterator(badger.DefaultIteratorOptions)
	defer it.Close()
	var count uint64
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if bytes.Equal(item.Key(), metaApplied) {
			continue
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read %q: %w", item.Key(), err)
		}
		scratch = append(scratch[:0], 1)
		scratch = appendBytes(scratch, item.Key())
		scratch = binary.AppendUvarint(scratch, uint64(len(v)))
		if _, err := bw.Write(scratch); err != nil {
			return err
		}
		if _, err := bw.Write(v); err != nil {
			return err
		}
		count++
	}
	scratch = binary.AppendUvarint(append(scratch[:0], 0), count)
	if _, err := bw.Write(scratch); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

// Restore implements raft.FSM: it replaces all state with the snapshot's.
// Keys absent from the snapshot are gone afterwards. The applied index is
// written last, so a crash mid-restore leaves an applied index of 0 and the
// restore is simply done again on the next start.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	crc := crc32.New(crcTable)
	r := &snapReader{r: bufio.NewReaderSize(rc, 256<<10), crc: crc}
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(r, magic); err != nil || !bytes.Equal(magic, snapMagic) {
		return fmt.Errorf("fsm: restore: not a raftkv snapshot (err=%v)", err)
	}
	applied, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("fsm: restore: header: %w", err)
	}
	if f.resuming.Load() && f.applied.Load() >= applied {
		f.logger.Info("keeping local state, it is newer than the snapshot", "applied", f.applied.Load(), "snapshot", applied)
		return nil
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	prevApplied := f.applied.Load()
	f.applied.Store(0)
	if err := f.db.DropAll(); err != nil {
		return fmt.Errorf("fsm: restore: drop old state: %w", err)
	}
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	var count uint64
	for {
		tag, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("fsm: restore: record %d: %w", count, err)
		}
		if tag == 0 {
			break
		}
		if tag != 1 {
			return fmt.Errorf("fsm: restore: record %d: unknown tag %d", count, tag)
		}
		k, err := r.readBytes()
		if err != nil {
			return fmt.Errorf("fsm: restore: record %d key: %w", count, err)
		}
		v, err := r.readBytes()
		if err != nil {
			return fmt.Errorf("fsm: restore: record %d value: %w", count, err)
		}
		if err := wb.Set(k, v); err != nil {
			return fmt.Errorf("fsm: restore: write record %d: %w", count, err)
		}
		count++
	}
	want, err := binary.ReadUvarint(r)
	if err != nil || want != count {
		return fmt.Errorf("fsm: restore: trailer says %d records, read %d (err=%v)", want, count, err)
	}
	sum := crc.Sum32()
	var got [4]byte
	if _, err := io.ReadFull(r.r, got[:]); err != nil || binary.BigEndian.Uint32(got[:]) != sum {
		return fmt.Errorf("fsm: restore: checksum mismatch (err=%v)", err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("fsm: restore: flush: %w", err)
	}
	// A snapshot with applied index 0 comes from an operator's restore (its
	// own indexes belong to another history): raise the reaped mark to what
	// this node had, so query indexes do not go backwards for its clients.
	err = f.db.Update(func(txn *badger.Txn) error {
		if applied == 0 {
			reaped, err := readUint(txn, metaReaped)
			if err != nil {
				return err
			}
			if err := txn.Set(metaReaped, uintBytes(max(reaped, prevApplied))); err != nil {
				return err
			}
		}
		return txn.Set(metaApplied, uintBytes(applied))
	})
	if err == nil {
		err = f.db.View(f.loadMeta)
	}
	if err != nil {
		return fmt.Errorf("fsm: restore: write applied index: %w", err)
	}
	f.advance(applied, f.kvIndex.Load())
	if f.notify != nil {
		f.notify.AllChanged()
	}
	f.logger.Info("restored snapshot", "applied", applied, "records", count)
	return nil
}

// snapReader reads the stream while feeding the checksum.
type snapReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	buf []byte
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
