package logstore

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// finishRotation completes a segment rotation that a crash interrupted.
//
// raft-wal seals a full segment (writes its index block, fsyncs) inside the
// StoreLogs call that fills it, and records the rotation in its metadata
// afterwards, in the background. After a crash between the two, raft-wal
// (v0.4.2, and master as of 2025) recovers the sealed segment as the tail,
// and every append fails with "segment is sealed", for ever. This records
// the rotation as raft-wal would have: the tail sealed at its last entry and
// a new empty tail after it, whose file wal.Open creates.
func finishRotation(dir string, segmentSize int) error {
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	state, err := meta.Load(dir)
	if err != nil {
		return fmt.Errorf("load wal metadata: %w", err)
	}
	n := len(state.Segments)
	if n == 0 || !state.Segments[n-1].SealTime.IsZero() {
		return nil
	}
	tail := state.Segments[n-1]
	w, err := segment.NewFiler(dir, fs.New()).RecoverTail(tail)
	if errors.Is(err, os.ErrNotExist) {
		return nil // wal.Open creates it
	}
	if err != nil {
		return fmt.Errorf("recover wal tail segment: %w", err)
	}
	sealed, indexStart, err := w.Sealed()
	last := w.LastIndex()
	w.Close()
	if err != nil {
		return fmt.Errorf("read wal tail segment: %w", err)
	}
	if !sealed {
		return nil
	}
	now := time.Now()
	tail.SealTime, tail.MaxIndex, tail.IndexStart = now, last, indexStart
	state.Segments[n-1] = tail
	state.Segments = append(state.Segments, types.SegmentInfo{
		ID: state.NextSegmentID, BaseIndex: last + 1, MinIndex: last + 1,
		SizeLimit: uint32(segmentSize), Codec: tail.Codec, CreateTime: now,
	})
	state.NextSegmentID++
	return meta.CommitState(state)
}
