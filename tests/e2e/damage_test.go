package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// damageCase damages a copy of a follower's data dir and names the file
// (relative to the data dir) that the node's refusal must name.
type damageCase struct {
	name   string
	damage func(t *testing.T, dir string) string
}

// A node whose data dir was damaged exits non-zero at once with one line
// naming the file and the problem and pointing to the recovery steps;
// never a panic, never a start on bad data. Then the recovery steps of
// docs/OPERATIONS.md are followed, and the node is back with every write.
func TestDamagedDataDir(t *testing.T) {
	c := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: buildOpts(),
		// Small segments and frequent snapshots: a few hundred writes make
		// several sealed segments, an open one and two snapshots.
		Args: []string{"-snapshot-threshold", "100", "-trailing-logs", "50", "-snapshot-interval", "200ms", "-raft-wal-segment-size", "65536"}})
	cl := raftkvClient(t, c)
	ctx := context.Background()
	const n = 600
	big := bytes.Repeat([]byte("v"), 8<<10) // past Badger's value threshold: into its value log
	for i := range n {
		v := []byte(fmt.Sprint(i))
		if i%50 == 0 {
			v = big
		}
		if err := cl.Put(ctx, fmt.Sprintf("acked/%03d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	_, followers := leaderAndFollowers(c)
	f := followers[0]
	fi := procIndex(c, f)
	testsupport.WaitFor(t, 30*time.Second, f.ID+" to have applied everything and snapshotted twice", func() error {
		if snaps, _ := filepath.Glob(filepath.Join(f.Dir, "snapshots", "*-*-*")); len(snaps) < 2 {
			return fmt.Errorf("%d snapshots", len(snaps))
		}
		resp, err := c.Get(f.Addr, "/v1/kv/acked/599?stale")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err := c.Stop(fi); err != nil {
		t.Fatal(err)
	}
	raftkvd := binary(t, "raftkvd")
	for _, dc := range damageCases() {
		t.Run(dc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, f.Dir, dir)
			file := filepath.Join(dir, dc.damage(t, dir))
			line := refusal(t, raftkvd, f.ID, dir)
			if !strings.Contains(line, file) || !strings.Contains(line, "docs/OPERATIONS.md#damaged-data") {
				t.Fatalf("the refusal does not name %s and the recovery steps: %q", file, line)
			}
			t.Logf("%s", line)
		})
	}

	// Recovery, as docs/OPERATIONS.md says. The state machine alone is
	// damaged: remove it, and the node rebuilds it from its snapshot and log.
	badger := matching(t, filepath.Join(f.Dir, "fsm"), ".sst")[0]
	flipByte(t, badger, fileSize(t, badger)/2)
	if line := refusal(t, raftkvd, f.ID, f.Dir); !strings.Contains(line, "fsm") {
		t.Fatalf("damaged state machine: %q", line)
	}
	if err := os.RemoveAll(filepath.Join(f.Dir, "fsm")); err != nil {
		t.Fatal(err)
	}
	c.StartProc(fi)
	c.WaitReady(30 * time.Second)
	checkAcked(t, c, f, n, big)

	// The raft log of a follower is damaged: remove the node from the
	// cluster, empty its data dir, and let it join again.
	if err := c.Stop(fi); err != nil {
		t.Fatal(err)
	}
	seg := matching(t, filepath.Join(f.Dir, "wal"), ".wal")[0]
	flipByte(t, seg, 100)
	if line := refusal(t, raftkvd, f.ID, f.Dir); !strings.Contains(line, seg) {
		t.Fatalf("damaged raft log: %q", line)
	}
	other := cli{t: t, endpoints: c.Procs[(fi+1)%3].Addr}
	other.ok("", "remove", f.ID)
	if err := os.RemoveAll(f.Dir); err != nil {
		t.Fatal(err)
	}
	f.Args = append(f.Args, "-join", c.Procs[(fi+1)%3].Addr)
	c.StartProc(fi)
	c.WaitReady(60 * time.Second)
	checkAcked(t, c, f, n, big)
}

func damageCases() []damageCase {
	wal := func(t *testing.T, dir string) []string { return matching(t, filepath.Join(dir, "wal"), ".wal") }
	newestSnapshot := func(t *testing.T, dir string) string {
		snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*-*-*"))
		sort.Slice(snaps, func(i, j int) bool { return snapIndex(snaps[i]) < snapIndex(snaps[j]) })
		return snaps[len(snaps)-1]
	}
	rel := func(dir, path string) string { r, _ := filepath.Rel(dir, path); return r }
	return []damageCase{
		{"sealed log segment, bit flipped", func(t *testing.T, dir string) string {
			seg := wal(t, dir)[0]
			flipByte(t, seg, 100)
			return rel(dir, seg)
		}},
		{"sealed log segment, truncated", func(t *testing.T, dir string) string {
			seg := wal(t, dir)[0]
			truncateFile(t, seg, fileSize(t, seg)/2)
			return rel(dir, seg)
		}},
		{"open log segment, truncated", func(t *testing.T, dir string) string {
			segs := wal(t, dir)
			truncateFile(t, segs[len(segs)-1], 200)
			return rel(dir, segs[len(segs)-1])
		}},
		{"open log segment, bit flipped", func(t *testing.T, dir string) string {
			segs := wal(t, dir)
			flipByte(t, segs[len(segs)-1], 100)
			return rel(dir, segs[len(segs)-1])
		}},
		{"log metadata", func(t *testing.T, dir string) string {
			meta := filepath.Join(dir, "wal", "wal-meta.db")
			if err := os.WriteFile(meta, bytes.Repeat([]byte{0xa5}, 32<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			return rel(dir, meta)
		}},
		{"snapshot state, bit flipped", func(t *testing.T, dir string) string {
			state := filepath.Join(newestSnapshot(t, dir), "state.bin")
			flipByte(t, state, fileSize(t, state)/2)
			return rel(dir, state)
		}},
		{"snapshot state, truncated", func(t *testing.T, dir string) string {
			state := filepath.Join(newestSnapshot(t, dir), "state.bin")
			truncateFile(t, state, fileSize(t, state)/2)
			return rel(dir, state)
		}},
		{"snapshot metadata", func(t *testing.T, dir string) string {
			meta := filepath.Join(newestSnapshot(t, dir), "meta.json")
			truncateFile(t, meta, 30)
			return rel(dir, meta)
		}},
		{"state machine table, bit flipped", func(t *testing.T, dir string) string {
			sst := matching(t, filepath.Join(dir, "fsm"), ".sst")[0]
			flipByte(t, sst, fileSize(t, sst)/2)
			return "fsm"
		}},
		{"state machine manifest, bit flipped", func(t *testing.T, dir string) string {
			flipByte(t, filepath.Join(dir, "fsm", "MANIFEST"), 20)
			return "fsm"
		}},
	}
}

// refusal starts raftkvd on dir and returns the last line it wrote, after
// checking that it exited with status 1, at once, without a panic.
func refusal(t *testing.T, raftkvd, id, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, raftkvd, "-id", id, "-addr", "127.0.0.1:0", "-data-dir", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("raftkvd on a damaged data dir: %v, want exit status 1\n%s", err, stderr.String())
	}
	out := stderr.String()
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Fatalf("raftkvd panicked:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func checkAcked(t *testing.T, c *proccluster.Cluster, p *proccluster.Proc, n int, big []byte) {
	t.Helper()
	one := cli{t: t, endpoints: p.Addr}
	lines := strings.Split(strings.TrimSpace(one.ok("", "ls", "--keys", "acked/")), "\n")
	if len(lines) != n {
		t.Fatalf("%s holds %d keys under acked/, want %d", p.ID, len(lines), n)
	}
	for _, i := range []int{0, 1, 50, 299, n - 1} {
		want := fmt.Sprint(i)
		if i%50 == 0 {
			want = string(big)
		}
		if got := one.ok("", "get", fmt.Sprintf("acked/%03d", i)); strings.TrimSpace(got) != want {
			t.Fatalf("%s: acked/%03d = %.40q, want %.40q", p.ID, i, got, want)
		}
	}
}

func procIndex(c *proccluster.Cluster, p *proccluster.Proc) int {
	for i, q := range c.Procs {
		if q == p {
			return i
		}
	}
	return -1
}

func matching(t *testing.T, dir, suffix string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if len(m) == 0 {
		t.Fatalf("no %s file in %s", suffix, dir)
	}
	sort.Strings(m)
	return m
}

func snapIndex(path string) uint64 {
	var term, index, ms uint64
	fmt.Sscanf(filepath.Base(path), "%d-%d-%d", &term, &index, &ms)
	return index
}

func fileSize(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x04
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.Truncate(path, int64(size)); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files under from into to.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(to, strings.TrimPrefix(path, from))
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}
