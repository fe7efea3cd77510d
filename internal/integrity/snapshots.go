package integrity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
)

// Snapshots checks every snapshot in raft's FileSnapshotStore under dir
// (<dir>/snapshots/<term>-<index>-<ms>/{meta.json,state.bin}): its metadata
// reads and names the snapshot it sits in (meta.json has no checksum of its
// own; its name does not change), and state.bin has the size and CRC-64 it
// records. raft would skip a snapshot whose metadata it cannot read and
// start from an older one, whose log may be gone. Snapshots still being
// written (*.tmp) are a crash's leftovers, not damage. It returns the index
// of the newest snapshot (0: none).
func Snapshots(dir string) (newest uint64, err error) {
	root := filepath.Join(dir, "snapshots")
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, damaged(root, "cannot be listed: %v", err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		meta, err := snapshot(filepath.Join(root, e.Name()))
		if err != nil {
			return 0, err
		}
		newest = max(newest, meta.Index)
	}
	return newest, nil
}

func snapshot(path string) (*raft.SnapshotMeta, error) {
	metaPath := filepath.Join(path, "meta.json")
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, damaged(metaPath, "cannot be read: %v", err)
	}
	var meta struct {
		raft.SnapshotMeta
		CRC []byte
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, damaged(metaPath, "does not parse: %v", err)
	}
	var term, index, ms uint64
	name := filepath.Base(path)
	if n, _ := fmt.Sscanf(name, "%d-%d-%d", &term, &index, &ms); n != 3 || meta.ID != name || meta.Term != term || meta.Index != index {
		return nil, damaged(metaPath, "describes snapshot %q (term %d, index %d), not the one it is in", meta.ID, meta.Term, meta.Index)
	}
	statePath := filepath.Join(path, "state.bin")
	f, err := os.Open(statePath)
	if err != nil {
		return nil, damaged(statePath, "cannot be read: %v", err)
	}
	defer f.Close()
	sum := crc64.New(crc64.MakeTable(crc64.ECMA))
	size, err := io.Copy(sum, f)
	switch {
	case err != nil:
		return nil, damaged(statePath, "cannot be read: %v", err)
	case size != meta.Size:
		return nil, damaged(statePath, "holds %d bytes, its snapshot %d", size, meta.Size)
	case !bytes.Equal(sum.Sum(nil), meta.CRC):
		return nil, damaged(statePath, "fails its checksum (CRC-64)")
	}
	return &meta.SnapshotMeta, nil
}
