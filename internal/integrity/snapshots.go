package integrity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/raft"
)

// Snapshots checks the snapshots raft would use, the newest Retain in
// its FileSnapshotStore under dir (<dir>/snapshots/<term>-<index>-<ms>/
// {meta.json,state.bin}): the metadata reads and names the snapshot it
// sits in (meta.json has no checksum of its own; its name does not
// change), and state.bin has the size and CRC-64 it records. raft would
// skip a snapshot whose metadata it cannot read and start from an older
// one, whose log may be gone. What a crash leaves is not damage: snapshots
// still being written (*.tmp), and older ones raft was deleting. It returns
// the index of the newest snapshot (0: none).
func Snapshots(dir string) (newest uint64, err error) {
	root := filepath.Join(dir, "snapshots")
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, damaged(root, "cannot be listed: %v", err)
	}
	type named struct {
		name               string
		term, index, stamp uint64
	}
	var snaps []named
	for _, e := range entries {
		var n named
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if c, _ := fmt.Sscanf(e.Name(), "%d-%d-%d", &n.term, &n.index, &n.stamp); c != 3 {
			continue // not raft's
		}
		n.name = e.Name()
		snaps = append(snaps, n)
	}
	// raft's order: newest term, then index, then name.
	sort.Slice(snaps, func(i, j int) bool {
		a, b := snaps[i], snaps[j]
		if a.term != b.term {
			return a.term > b.term
		}
		if a.index != b.index {
			return a.index > b.index
		}
		return a.name > b.name
	})
	for _, n := range snaps[:min(len(snaps), Retain)] {
		meta, err := snapshot(filepath.Join(root, n.name))
		if err != nil {
			return 0, err
		}
		newest = max(newest, meta.Index)
	}
	return newest, nil
}

// Retain is how many snapshots raft keeps (raftstore passes it to the
// snapshot store): older ones are being deleted.
const Retain = 2

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
