package integrity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

const segmentSize = 16 << 10

// writeWAL writes n entries of about 200 bytes in batches of 5 into a WAL
// of small segments (several sealed, one open) and returns its dir.
func writeWAL(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i += 5 {
		var batch []*raft.Log
		for j := i; j < i+5 && j <= n; j++ {
			batch = append(batch, &raft.Log{Index: uint64(j), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(j)}, 200)})
		}
		if err := w.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	meta.Close()
	return dir
}

// segments lists the segment files, oldest first (the last is open).
func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(m) < 3 {
		t.Fatalf("segments: %v %v", m, err)
	}
	sort.Strings(m)
	return m
}

// dataEnd is the offset of the first all-zero frame header after the
// file header: the end of what was written.
func dataEnd(t *testing.T, path string) int {
	t.Helper()
	w := walk(mustRead(t, path))
	if w.committed == 0 {
		t.Fatalf("%s holds nothing", path)
	}
	return w.goodEnd
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flip(t *testing.T, path string, off int) {
	t.Helper()
	b := mustRead(t, path)
	b[off] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.Truncate(path, int64(size)); err != nil {
		t.Fatal(err)
	}
}

func wantDamage(t *testing.T, err error, file, problem string) {
	t.Helper()
	var d *Damage
	if !errors.As(err, &d) || !errors.Is(err, ErrDamaged) {
		t.Fatalf("want damage of %s (%s), got %v", filepath.Base(file), problem, err)
	}
	if d.File != file || !strings.Contains(d.Problem, problem) {
		t.Fatalf("want damage of %s (%s), got %v", file, problem, err)
	}
}

func TestWALClean(t *testing.T) {
	if err := WAL(writeWAL(t, 400)); err != nil {
		t.Fatal(err)
	}
}

// Every kind of damage to acknowledged data is found, and names the file.
func TestWALDamage(t *testing.T) {
	for _, c := range []struct {
		name    string
		damage  func(t *testing.T, segs []string) string // returns the damaged file
		problem string
	}{
		{"bit flipped in a sealed segment's entry", func(t *testing.T, segs []string) string {
			flip(t, segs[0], fileHeaderLen+frameHeaderLen+100)
			return segs[0]
		}, "fails its checksum"},
		{"bit flipped in a sealed segment's frame header", func(t *testing.T, segs []string) string {
			flip(t, segs[1], fileHeaderLen+5)
			return segs[1]
		}, ""},
		{"sealed segment cut short", func(t *testing.T, segs []string) string {
			truncate(t, segs[0], segmentSize/2)
			return segs[0]
		}, ""},
		{"sealed segment's header", func(t *testing.T, segs []string) string {
			flip(t, segs[1], 9)
			return segs[1]
		}, "header"},
		{"bit flipped in the open segment, before its last batch", func(t *testing.T, segs []string) string {
			tail := segs[len(segs)-1]
			flip(t, tail, fileHeaderLen+frameHeaderLen+50)
			return tail
		}, "fails its checksum"},
		{"frame header of the open segment, before its last batch", func(t *testing.T, segs []string) string {
			tail := segs[len(segs)-1]
			flip(t, tail, fileHeaderLen+4)
			return tail
		}, ""},
		{"open segment cut short", func(t *testing.T, segs []string) string {
			tail := segs[len(segs)-1]
			truncate(t, tail, dataEnd(t, tail)/2)
			return tail
		}, "truncated"},
		{"frame length of the open segment, jumping over the rest of its data", func(t *testing.T, segs []string) string {
			tail := segs[len(segs)-1]
			flip(t, tail, fileHeaderLen+6) // +1 MiB
			return tail
		}, "acknowledged batches follow"},
		{"segment missing", func(t *testing.T, segs []string) string {
			os.Remove(segs[1])
			return segs[1]
		}, "missing"},
		{"metadata missing", func(t *testing.T, segs []string) string {
			meta := filepath.Join(filepath.Dir(segs[0]), metadb.FileName)
			os.Remove(meta)
			return meta
		}, "missing"},
		{"metadata", func(t *testing.T, segs []string) string {
			meta := filepath.Join(filepath.Dir(segs[0]), metadb.FileName)
			os.WriteFile(meta, bytes.Repeat([]byte("x"), 8192), 0o644)
			return meta
		}, "cannot be read"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeWAL(t, 400)
			file := c.damage(t, segments(t, dir))
			wantDamage(t, WAL(dir), file, c.problem)
		})
	}
}

// The open segment's file may be missing: a crash after a rotation was
// recorded but before its file was made (raft-wal makes it at open). The
// metadata cannot tell that from an open segment deleted by hand; then the
// check that the log covers what the state machine applied is what stops
// the node (Coverage).
func TestWALOpenSegmentNotMadeYet(t *testing.T) {
	dir := writeWAL(t, 400)
	segs := segments(t, dir)
	os.Remove(segs[len(segs)-1])
	meta := &metadb.BoltMetaDB{}
	state, err := meta.Load(dir)
	meta.Close()
	if err != nil || len(state.Segments) != len(segs) {
		t.Fatal(err)
	}
	// Without it the log ends with the last sealed segment, whose entries
	// raft-wal still reads.
	if err := WAL(dir); err != nil {
		t.Fatal(err)
	}
}

// What a crash can leave is not damage: a torn last batch (raft-wal drops
// it: it was never acknowledged), and bytes past the end of the data.
func TestWALCrashLeftoversAreNotDamage(t *testing.T) {
	dir := writeWAL(t, 400)
	tail := segments(t, dir)[len(segments(t, dir))-1]
	end := dataEnd(t, tail)
	flip(t, tail, end-frameHeaderLen-20) // inside the last batch
	flip(t, tail, end+4096)              // in the space not written yet
	if err := WAL(dir); err != nil {
		t.Fatal(err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	defer w.Close()
	if last, _ := w.LastIndex(); last != 395 {
		t.Fatalf("after a torn last batch of 5: last index %d, want 395", last)
	}
}

// snapshotStore makes two snapshots and returns the store's dir and the
// newest snapshot's dir.
func snapshotStore(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	store, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for i, index := range []uint64{100, 200} {
		sink, err := store.Create(raft.SnapshotVersionMax, index, 3, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(sink, "state %d %s", i, strings.Repeat("x", 1000))
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		last = filepath.Join(dir, "snapshots", sink.ID())
	}
	os.Mkdir(filepath.Join(dir, "snapshots", "3-300-1.tmp"), 0o755) // one being written at the crash
	return dir, last
}

func TestSnapshots(t *testing.T) {
	dir, _ := snapshotStore(t)
	if newest, err := Snapshots(dir); err != nil || newest != 200 {
		t.Fatalf("clean: newest %d, %v", newest, err)
	}
	for _, c := range []struct {
		name    string
		damage  func(t *testing.T, snap string) string
		problem string
	}{
		{"bit flipped in the state", func(t *testing.T, snap string) string {
			flip(t, filepath.Join(snap, "state.bin"), 500)
			return filepath.Join(snap, "state.bin")
		}, "checksum"},
		{"state cut short", func(t *testing.T, snap string) string {
			truncate(t, filepath.Join(snap, "state.bin"), 10)
			return filepath.Join(snap, "state.bin")
		}, "holds 10 bytes"},
		{"metadata names another index", func(t *testing.T, snap string) string {
			meta := filepath.Join(snap, "meta.json")
			b := bytes.Replace(mustRead(t, meta), []byte(`"Index":200`), []byte(`"Index":300`), 1)
			os.WriteFile(meta, b, 0o644)
			return meta
		}, "not the one it is in"},
		{"metadata garbled", func(t *testing.T, snap string) string {
			meta := filepath.Join(snap, "meta.json")
			truncate(t, meta, 20)
			return meta
		}, "does not parse"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, snap := snapshotStore(t)
			file := c.damage(t, snap)
			_, err := Snapshots(dir)
			wantDamage(t, err, file, c.problem)
		})
	}
}

func TestCoverage(t *testing.T) {
	for _, c := range []struct {
		first, last, snapshot, applied uint64
		ok                             bool
	}{
		{1, 100, 0, 100, true},
		{1, 100, 0, 60, true},    // behind: replayed
		{50, 100, 80, 100, true}, // compacted behind a snapshot
		{0, 0, 0, 40, true},      // no raft state at all: the FSM is dropped
		{1, 90, 0, 100, false},   // the log lost acknowledged entries
		{90, 100, 50, 100, false},
		{0, 0, 80, 100, false},
	} {
		err := Coverage("log", c.first, c.last, c.snapshot, c.applied)
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

type gappyLog struct{ first, last, missing uint64 }

func (g gappyLog) FirstIndex() (uint64, error) { return g.first, nil }
func (g gappyLog) LastIndex() (uint64, error)  { return g.last, nil }
func (g gappyLog) GetLog(i uint64, l *raft.Log) error {
	if i == g.missing {
		return raft.ErrLogNotFound
	}
	l.Index = i
	return nil
}

func TestLogIsOneRun(t *testing.T) {
	if err := Log("log", gappyLog{1, 50, 0}); err != nil {
		t.Fatal(err)
	}
	wantDamage(t, Log("log", gappyLog{1, 50, 17}), "log", "entry 17")
}

// A bit flipped anywhere in any segment is either reported, or harmless:
// the log still opens with every entry intact. The one exception is the
// open segment's last batch, which a power loss can tear before it is
// acknowledged, so raft-wal drops it as torn: then the log is intact up to
// the batch before.
func TestWALRandomBitFlips(t *testing.T) {
	template := writeWAL(t, 400)
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("RAFTKV_FLIP_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (replay with RAFTKV_FLIP_SEED=%d)", seed, seed)
	rnd := rand.New(rand.NewPCG(1, seed))
	reported, harmless, torn := 0, 0, 0
	for range 150 {
		dir := t.TempDir()
		copyDir(t, template, dir)
		segs := segments(t, dir)
		seg := segs[rnd.IntN(len(segs))]
		size := len(mustRead(t, seg))
		if seg == segs[len(segs)-1] {
			size = dataEnd(t, seg) + 256 // the open segment is mostly zeros
		}
		flip(t, seg, rnd.IntN(size))
		if err := WAL(dir); err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatal(err)
			}
			reported++
			continue
		}
		switch last := readAll(t, dir); last {
		case 400:
			harmless++
		case 395:
			torn++
		default:
			t.Fatalf("a flipped bit in %s went unreported and the log ends at %d", filepath.Base(seg), last)
		}
	}
	t.Logf("150 bit flips: %d reported, %d harmless, %d in the open segment's last batch (dropped as torn)", reported, harmless, torn)
}

// readAll opens the WAL, checks every entry it holds against what
// writeWAL wrote, and returns its last index.
func readAll(t *testing.T, dir string) uint64 {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
	if err != nil {
		t.Fatalf("no damage reported, but the log does not open: %v", err)
	}
	defer w.Close()
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil || l.Index != i || !bytes.Equal(l.Data, bytes.Repeat([]byte{byte(i)}, 200)) {
			t.Fatalf("no damage reported, but entry %d reads back as %d %x (%v)", i, l.Index, l.Data, err)
		}
	}
	return last
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.WriteFile(filepath.Join(to, e.Name()), mustRead(t, filepath.Join(from, e.Name())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// raft-wal starts a new open segment (after a rotation, or raft's "clearing
// log suffix") by committing its metadata, then creating the file, then
// sizing it. A crash between any two leaves a log that raft-wal opens with
// every entry; none of it is damage.
func TestWALNewOpenSegmentCrashStates(t *testing.T) {
	for name, crash := range map[string]func(path string) error{
		"file not created yet":    os.Remove,
		"file created, not sized": func(path string) error { return os.Truncate(path, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			meta := &metadb.BoltMetaDB{}
			w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
			if err != nil {
				t.Fatal(err)
			}
			var logs []*raft.Log
			for i := uint64(1); i <= 10; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte("x")})
			}
			if err := w.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := w.DeleteRange(8, 10); err != nil { // seals, and starts a new open segment at 8
				t.Fatal(err)
			}
			w.Close()
			meta.Close()
			segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
			sort.Strings(segs)
			if err := crash(segs[len(segs)-1]); err != nil {
				t.Fatal(err)
			}
			if err := WAL(dir); err != nil {
				t.Fatalf("a crash state taken for damage: %v", err)
			}
			// raft-wal opens the log and appends to its open segment; the
			// next crash state must not be taken for damage either.
			meta = &metadb.BoltMetaDB{}
			w, err = wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.StoreLogs([]*raft.Log{{Index: 8, Term: 2, Data: []byte("y")}}); err != nil {
				t.Fatal(err)
			}
			w.Close()
			meta.Close()
			if err := WAL(dir); err != nil {
				t.Fatalf("after the node appended to the segment a crash left: %v", err)
			}
		})
	}
}

// Snapshots older than the two raft keeps may be half deleted by a crash
// while raft reaped them; they are never used.
func TestSnapshotBeingReapedIsNotDamage(t *testing.T) {
	dir, _ := snapshotStore(t)
	old := filepath.Join(dir, "snapshots", "2-50-1")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "meta.json"), []byte(`{"ID":"2-50-1","Index":50,"Term":2}`), 0o644); err != nil {
		t.Fatal(err) // its state.bin already gone
	}
	if newest, err := Snapshots(dir); err != nil || newest != 200 {
		t.Fatalf("newest %d, %v", newest, err)
	}
}
