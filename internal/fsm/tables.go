package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"

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

// verifyTables opens every table the manifest lists and checks its
// checksums here, before Badger does: Badger opens its tables in goroutines
// of its own, where some damage makes it panic (a nil dereference in its
// checksum error path, assertions while reading a table's index) and takes
// the process down. Here a panic is caught and reported as the table's
// damage. A table file the manifest does not list is a crash's leftover
// (written before the change set that would have added it, often empty):
// Badger deletes those itself, so they are no damage.
func verifyTables(dir string, bo badger.Options) error {
	ids, err := manifestTables(dir, bo)
	if err != nil {
		return err
	}
	opts := table.Options{ChkMode: options.OnTableRead, Compression: bo.Compression, BlockSize: bo.BlockSize,
		BloomFalsePositive: bo.BloomFalsePositive, ZSTDCompressionLevel: bo.ZSTDCompressionLevel, ReadOnly: true}
	for _, id := range ids {
		path := table.NewFilename(id, dir)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("table %s, listed in %s, is missing: %w", path, badger.ManifestFilename, err)
		}
		if err := verifyTable(path, opts); err != nil {
			return fmt.Errorf("table %s is damaged: %w", path, err)
		}
	}
	return nil
}

// manifestTables lists the tables Badger's manifest says the state machine
// is made of (none for a new one). verifyManifest has checked the file.
func manifestTables(dir string, bo badger.Options) (ids []uint64, err error) {
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s is damaged: unreadable (%v)", path, r)
		}
	}()
	m, _, err := badger.ReplayManifestFile(f, bo.ExternalMagicVersion, bo)
	if err != nil {
		return nil, fmt.Errorf("%s is damaged: %w", path, err)
	}
	for id := range m.Tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
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
