// Package integrity checks a node's data dir before the node starts on it:
// every raft log segment's checksums, every snapshot's, and whether the
// log, the snapshots and the state machine fit together. It exists because
// the libraries underneath trust their files: raft-wal checks the CRC of
// the last batch of its last segment only (a flipped bit anywhere else is
// read back as data, and a damaged frame header silently ends the log
// early), raft's snapshot store skips a snapshot whose metadata it cannot
// read, and raft panics on a log it cannot read back. A node must instead
// refuse to start and say which file is damaged and how, so that an
// operator repairs it (docs/OPERATIONS.md, "Damaged data") rather than the
// node serving, voting or replicating from bad data.
//
// What a crash can leave is not damage: a last batch torn by a power loss
// (raft-wal drops it, and it was never acknowledged), snapshots still being
// written (*.tmp), and a state machine that is behind its log (it is
// replayed). Everything else is.
package integrity

import (
	"errors"
	"fmt"
)

// ErrDamaged is what every finding wraps (errors.Is).
var ErrDamaged = errors.New("damaged data")

// Damage names a damaged file and what is wrong with it.
type Damage struct {
	File    string // path of the file, or of the directory when a file is missing
	Problem string
}

func (d *Damage) Error() string { return d.File + ": " + d.Problem }
func (d *Damage) Unwrap() error { return ErrDamaged }

func damaged(file, format string, args ...any) error {
	return &Damage{File: file, Problem: fmt.Sprintf(format, args...)}
}
