package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// verifyManifest reads Badger's MANIFEST (a header, then change sets, each
// with its length and CRC32-C) to its end. Badger takes a change set cut
// short, or with a damaged length, for a torn last write and drops it: the
// tables it added are then deleted as strays, and the state machine opens
// without them, wrong. Badger syncs each change set it appends; so
// anything but whole change sets to the end is damage.
func verifyManifest(dir string) error {
	path := filepath.Join(dir, badger.ManifestFilename)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil // a new state machine
	}
	if err != nil {
		return err
	}
	if len(b) < 8 || string(b[:4]) != "Bdgr" {
		return fmt.Errorf("%s is damaged: not a Badger manifest", path)
	}
	for off := 8; off < len(b); {
		if off+8 > len(b) {
			return fmt.Errorf("%s is damaged: cut short at offset %d", path, off)
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		sum := binary.BigEndian.Uint32(b[off+4:])
		if n > len(b)-off-8 {
			return fmt.Errorf("%s is damaged: the change set at offset %d runs past the end", path, off)
		}
		if crc32.Checksum(b[off+8:off+8+n], crcTable) != sum {
			return fmt.Errorf("%s is damaged: the change set at offset %d fails its checksum", path, off)
		}
		off += 8 + n
	}
	return nil
}

// verifyTables opens every table in dir and checks its checksums here,
// before Badger does: Badger opens its tables in goroutines of its own,
// where some damage makes it panic (a nil dereference in its checksum
// error path, assertions while reading a table's index) and takes the
// process down. Here a panic is caught and reported as the table's damage.
func verifyTables(dir string, bo badger.Options) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return err
	}
	opts := table.Options{ChkMode: options.OnTableRead, Compression: bo.Compression, BlockSize: bo.BlockSize,
		BloomFalsePositive: bo.BloomFalsePositive, ZSTDCompressionLevel: bo.ZSTDCompressionLevel, ReadOnly: true}
	for _, path := range files {
		if err := verifyTable(path, opts); err != nil {
			return fmt.Errorf("table %s is damaged: %w", path, err)
		}
	}
	return nil
}

func verifyTable(path string, opts table.Options) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable (%v)", r)
		}
	}()
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil && !errors.Is(err, z.NewFile) {
		return err
	}
	t, err := table.OpenTable(mf, opts) // closes mf when it fails
	if err != nil {
		return err
	}
	return t.Close(-1) // not DecrRef: at zero references that deletes the file
}
