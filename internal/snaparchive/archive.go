// Package snaparchive writes and reads Consul's snapshot archive: a gzipped
// tar of meta.json (raft's snapshot metadata), state.bin (the state) and
// SHA256SUMS, in that order. raftkv's GET /v1/snapshot uses it so that
// `consul snapshot save` and consul/api verify the file as they do
// Consul's; state.bin holds raftkv's own snapshot stream.
package snaparchive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// ErrCorrupt: the archive is not one, or a checksum does not match.
var ErrCorrupt = errors.New("snapshot archive corrupt")

// Write writes the archive of state (size bytes) described by meta to w.
// meta.Size is set to size.
func Write(w io.Writer, meta raft.SnapshotMeta, state io.Reader, size int64) error {
	meta.Size = size
	var metaBuf bytes.Buffer
	if err := json.NewEncoder(&metaBuf).Encode(meta); err != nil {
		return fmt.Errorf("snaparchive: encode meta: %w", err)
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := time.Now()
	sums := map[string][]byte{}
	put := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: now}); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), r)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s: %d bytes, expected %d", name, n, size)
		}
		sums[name] = h.Sum(nil)
		return nil
	}
	if err := put("meta.json", int64(metaBuf.Len()), &metaBuf); err != nil {
		return fmt.Errorf("snaparchive: %w", err)
	}
	if err := put("state.bin", size, state); err != nil {
		return fmt.Errorf("snaparchive: %w", err)
	}
	var list bytes.Buffer
	for _, name := range []string{"meta.json", "state.bin"} {
		fmt.Fprintf(&list, "%x  %s\n", sums[name], name)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "SHA256SUMS", Mode: 0o600, Size: int64(list.Len()), ModTime: now}); err != nil {
		return fmt.Errorf("snaparchive: %w", err)
	}
	if _, err := tw.Write(list.Bytes()); err != nil {
		return fmt.Errorf("snaparchive: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("snaparchive: %w", err)
	}
	return gz.Close()
}

// IsArchive reports whether b (the first bytes of a file) starts a gzip
// stream, as an archive does.
func IsArchive(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// Read checks an archive and copies its state.bin to state. It refuses
// unknown files, missing files and checksum mismatches, so nothing of a
// bad archive is used: state must be discarded if Read fails.
func Read(r io.Reader, state io.Writer) (raft.SnapshotMeta, error) {
	var meta raft.SnapshotMeta
	gz, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return meta, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	tr := tar.NewReader(gz)
	hashes := map[string]hash.Hash{}
	var sums []byte
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return meta, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		h := sha256.New()
		switch hd.Name {
		case "meta.json":
			hashes[hd.Name] = h
			if err := json.NewDecoder(io.TeeReader(io.LimitReader(tr, 1<<20), h)).Decode(&meta); err != nil {
				return meta, fmt.Errorf("%w: meta.json: %v", ErrCorrupt, err)
			}
			_, _ = io.Copy(h, tr) // the encoder's trailing newline
		case "state.bin":
			hashes[hd.Name] = h
			if _, err := io.Copy(io.MultiWriter(state, h), tr); err != nil {
				return meta, fmt.Errorf("%w: state.bin: %v", ErrCorrupt, err)
			}
		case "SHA256SUMS":
			if sums, err = io.ReadAll(io.LimitReader(tr, 1<<16)); err != nil {
				return meta, fmt.Errorf("%w: SHA256SUMS: %v", ErrCorrupt, err)
			}
		default:
			return meta, fmt.Errorf("%w: unexpected file %q", ErrCorrupt, hd.Name)
		}
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		h := hashes[name]
		if !ok || h == nil {
			return meta, fmt.Errorf("%w: SHA256SUMS lists %q", ErrCorrupt, line)
		}
		if want, err := hex.DecodeString(sum); err != nil || !bytes.Equal(want, h.Sum(nil)) {
			return meta, fmt.Errorf("%w: checksum of %s does not match", ErrCorrupt, name)
		}
		listed[name] = true
	}
	for _, name := range []string{"meta.json", "state.bin"} {
		if !listed[name] {
			return meta, fmt.Errorf("%w: %s missing or not checksummed", ErrCorrupt, name)
		}
	}
	return meta, nil
}
