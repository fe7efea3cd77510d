package integrity

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// raft-wal's segment format (its README, "Segment Files"): a 32-byte file
// header, then 8-byte aligned frames with an 8-byte header (type, three
// zero bytes, a length, or for a commit frame the CRC32-Castagnoli of every
// byte written since the previous commit frame, the file header included
// for the first one).
const (
	fileHeaderLen  = 32
	frameHeaderLen = 8
	segmentMagic   = 0x58eb6b0d

	frameEntry  = 1
	frameIndex  = 2
	frameCommit = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WAL checks the raft-wal log in dir: its metadata opens, every segment it
// lists exists and has the header it should, every batch in it matches its
// checksum, every entry carries the index of its place, a sealed segment
// holds its whole range and its index, and no acknowledged batch follows a
// damaged spot of the open segment (a torn last batch is the only damage a
// crash can make; raft-wal drops it). Bytes after a sealed segment's seal
// and after the open segment's data are not data: damage there does not
// count. One crash state it repairs rather than reports: an open segment
// created but not yet given its size is given it (see checkSegment).
func WAL(dir string) error {
	metaPath := filepath.Join(dir, metadb.FileName)
	if _, err := os.Stat(metaPath); os.IsNotExist(err) {
		// raft-wal would make a new one and delete every segment, and the
		// node's term and vote with it.
		return damaged(metaPath, "missing, while the log's segments are there")
	}
	meta := &metadb.BoltMetaDB{}
	state, err := meta.Load(dir)
	meta.Close()
	if err != nil {
		return damaged(metaPath, "cannot be read: %v", err)
	}
	for i, info := range state.Segments {
		tail := i == len(state.Segments)-1
		if err := checkSegment(dir, info, tail); err != nil {
			return err
		}
	}
	return nil
}

// checkSegment checks one segment file.
func checkSegment(dir string, info types.SegmentInfo, tail bool) error {
	path := filepath.Join(dir, segment.FileName(info))
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) && tail && info.SealTime.IsZero() {
		// A crash after a rotation was recorded but before its new file
		// was made: raft-wal makes it when it opens.
		return nil
	}
	if os.IsNotExist(err) {
		return damaged(path, "missing (the log's metadata lists it)")
	}
	if err != nil {
		return damaged(path, "cannot be read: %v", err)
	}
	if tail && info.SizeLimit > 0 && len(data) == 0 {
		// A crash between the creation of the segment and its allocation:
		// finish the allocation, as raft-wal would have. raft-wal appends
		// to the open segment it finds without allocating it, so left empty
		// it would grow a write at a time, and the next crash would leave
		// it short like a cut one.
		if err := os.Truncate(path, int64(info.SizeLimit)); err != nil {
			return damaged(path, "empty, and cannot be given its size: %v", err)
		}
		return nil
	}
	if tail && info.SizeLimit > 0 && len(data) > 0 && len(data) < int(info.SizeLimit) {
		// raft-wal creates a segment empty, then allocates its full size in
		// one step, before anything is written to it: empty is a crash
		// between the two, anything else short is a cut.
		return damaged(path, "truncated: %d bytes, the segment was created with %d", len(data), info.SizeLimit)
	}
	w := walk(data)
	if w.committed > 0 || !tail {
		if err := header(data, info); err != nil {
			return damaged(path, "%v", err)
		}
	}
	if err := w.indexes(data, info.BaseIndex); err != nil {
		return damaged(path, "%v", err)
	}
	if tail {
		// What follows the last good batch may be a batch torn by a crash
		// before it was acknowledged; a good batch after it may not.
		if w.validAfter(w.goodEnd) {
			return damaged(path, "%s, and acknowledged batches follow it", w.problem)
		}
		return nil
	}
	last := info.BaseIndex + uint64(w.committed) - 1
	switch {
	case info.MaxIndex > last:
		return damaged(path, "%s: it holds entries up to %d, the log's metadata says %d", w.problem, last, info.MaxIndex)
	case w.indexStart == 0 && w.committed > 0:
		return damaged(path, "%s: sealed, but its index is gone", w.problem)
	case info.IndexStart != 0 && info.IndexStart != uint64(w.indexStart):
		return damaged(path, "its index is at offset %d, the log's metadata says %d", w.indexStart, info.IndexStart)
	}
	return nil
}

func header(data []byte, info types.SegmentInfo) error {
	if len(data) < fileHeaderLen {
		return fmt.Errorf("shorter than its header")
	}
	le := binary.LittleEndian
	switch {
	case le.Uint64(data[0:8]) != segmentMagic:
		return fmt.Errorf("not a raft-wal segment (bad magic number)")
	case le.Uint64(data[8:16]) != info.BaseIndex || le.Uint64(data[16:24]) != info.ID:
		return fmt.Errorf("its header names another segment")
	}
	return nil
}

// walked is what reading a segment's frames found: the good prefix, up
// to the first batch that fails its checksum or cannot be read.
type walked struct {
	entryAt    []int  // offset of each entry frame in the good prefix
	committed  int    // len(entryAt)
	indexStart int    // offset of the index array (after its frame header) in the good prefix; 0: none
	goodEnd    int    // end of the good prefix: just after its last commit frame
	problem    string // what ended the good prefix, for messages
	data       []byte
}

// walk reads frames from the file header on, as raft-wal does, but checks
// every batch's checksum, not only the last one's.
func walk(data []byte) *walked {
	w := &walked{data: data, goodEnd: fileHeaderLen}
	var pending []int
	pendingIndex := 0
	batchStart := 0
	off := fileHeaderLen
	for ; off+frameHeaderLen <= len(data); off += frameHeaderLen {
		h := data[off : off+frameHeaderLen]
		if bytes.Equal(h, make([]byte, frameHeaderLen)) {
			w.problem = fmt.Sprintf("its frames end at offset %d", off)
			return w // zeros: the end of what was written
		}
		typ, n := h[0], int(binary.LittleEndian.Uint32(h[4:8]))
		switch {
		case h[1] != 0 || h[2] != 0 || h[3] != 0 || typ < frameEntry || typ > frameCommit:
			w.problem = fmt.Sprintf("unreadable frame header at offset %d", off)
			return w
		case typ == frameCommit:
			if crc32.Checksum(data[batchStart:off], castagnoli) != uint32(n) {
				w.problem = fmt.Sprintf("the batch ending at offset %d fails its checksum", off)
				return w
			}
			w.entryAt = append(w.entryAt, pending...)
			w.committed = len(w.entryAt)
			if pendingIndex > 0 {
				w.indexStart = pendingIndex
			}
			pending, pendingIndex = pending[:0], 0
			batchStart, w.goodEnd = off+frameHeaderLen, off+frameHeaderLen
			continue
		case off+frameHeaderLen+n > len(data):
			w.problem = fmt.Sprintf("the frame at offset %d runs past the end of the file", off)
			return w
		case typ == frameEntry:
			pending = append(pending, off)
		case typ == frameIndex:
			pendingIndex = off + frameHeaderLen
		}
		off += n + (frameHeaderLen-n%frameHeaderLen)%frameHeaderLen
	}
	w.problem = "the file ends"
	return w
}

// validAfter reports whether a batch whose checksum matches starts after
// off (the end of the good prefix): then what ended the good prefix is not
// the torn end of the last write but damage to acknowledged data. Any
// frame header from off on may start such a batch (the commit frame before
// it may be the damaged part), so each is tried; a try ends at the first
// commit frame or unreadable header, and past the data there are only
// zeros, so this costs a few reads per frame.
func (w *walked) validAfter(off int) bool {
	data := w.data
	for p := off; p+2*frameHeaderLen <= len(data); p += frameHeaderLen {
		if (data[p] == frameEntry || data[p] == frameIndex) && data[p+1] == 0 && data[p+2] == 0 && data[p+3] == 0 && w.batchValidFrom(p) {
			return true
		}
	}
	return false
}

// batchValidFrom reports whether well-formed frames starting at start end
// in a commit frame whose checksum covers them.
func (w *walked) batchValidFrom(start int) bool {
	data := w.data
	for off, frames := start, 0; off+frameHeaderLen <= len(data); frames++ {
		h := data[off : off+frameHeaderLen]
		typ, n := h[0], int(binary.LittleEndian.Uint32(h[4:8]))
		switch {
		case h[1] != 0 || h[2] != 0 || h[3] != 0:
			return false
		case typ == frameCommit:
			return frames > 0 && crc32.Checksum(data[start:off], castagnoli) == uint32(n)
		case typ != frameEntry && typ != frameIndex, off+frameHeaderLen+n > len(data):
			return false
		}
		off += frameHeaderLen + n + (frameHeaderLen-n%frameHeaderLen)%frameHeaderLen
	}
	return false
}

// indexes checks that each committed entry decodes and carries the index
// of its place in the segment.
func (w *walked) indexes(data []byte, base uint64) error {
	var codec wal.BinaryCodec
	for i, off := range w.entryAt {
		n := int(binary.LittleEndian.Uint32(data[off+4 : off+8]))
		var l raft.Log
		if err := codec.Decode(data[off+frameHeaderLen:off+frameHeaderLen+n], &l); err != nil {
			return fmt.Errorf("entry at offset %d does not decode: %v", off, err)
		}
		if want := base + uint64(i); l.Index != want {
			return fmt.Errorf("entry at offset %d has index %d, its place is %d", off, l.Index, want)
		}
	}
	return nil
}
