package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// A full disk: three nodes on one small tmpfs, filled to the last byte by
// another process while clients write through every node. Writes must be
// refused with 507 (not applied), linearizable reads must go on, no node
// may exit, and once the space is freed writes are taken again. Every
// write acknowledged before, during and after must be there, also after a
// kill -9 of every node.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
	dirs := [][]string{}
	for i := range 3 {
		dirs = append(dirs, []string{"-data-dir", filepath.Join(disk, fmt.Sprintf("n%d", i+1))})
	}
	c := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: buildOpts(), NodeArgs: dirs,
		Args: []string{"-disk-reserve", "16777216", "-raft-wal-segment-size", "1048576", "-snapshot-threshold", "500", "-trailing-logs", "200"}})
	w := &diskWriters{c: c, acked: map[string]string{}, stop: make(chan struct{})}
	w.start()
	defer w.halt()
	testsupport.WaitFor(t, 20*time.Second, "writes acknowledged on every node", func() error { return w.everyNode(200) })

	filled := fill(t, filepath.Join(disk, "filler"))
	t.Logf("another process filled the disk: %d MiB", filled>>20)
	testsupport.WaitFor(t, 20*time.Second, "every node to refuse writes with 507", func() error { return w.everyNode(507) })
	refusing := time.Now()
	for i, p := range c.Procs {
		code, body := get(t, p.Addr, "/v1/kv/probe") // linearizable: needs the leader
		if code != 200 && code != 404 {
			t.Fatalf("a linearizable read on n%d while the disk is full: %d %s", i+1, code, body)
		}
		if code, body = get(t, p.Addr, "/metrics"); i == 0 && !strings.Contains(body, "raftkv_disk_full 1") {
			t.Errorf("n1's raftkv_disk_full is not 1 while its disk is full")
		}
	}
	w.notApplied("while the disk is full", 3*time.Second)
	for i, p := range c.Procs {
		if !p.Running() {
			t.Fatalf("n%d exited on a full disk:\n%s", i+1, p.Log.String())
		}
	}
	held := time.Since(refusing)

	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	testsupport.WaitFor(t, 20*time.Second, "writes taken again on every node", func() error { return w.everyNode(200) })
	t.Logf("writes taken again %s after the space was freed (refused for %s)", time.Since(freed).Round(10*time.Millisecond), held.Round(10*time.Millisecond))
	w.halt()
	counts := w.counts()
	t.Logf("write answers: %v", counts)
	for code, n := range counts {
		if code != 200 && code != 507 && n > 0 {
			t.Logf("%d answers %d (around the moments the disk filled and was freed)", n, code)
		}
	}
	w.checkAcked(t, "after the disk was freed")
	for i := range c.Procs {
		c.Kill(i)
	}
	for i := range c.Procs {
		c.StartProc(i)
	}
	c.WaitReady(30 * time.Second)
	w.checkAcked(t, "after a kill -9 of every node")
}

// fill writes to path until the file system is full, as a runaway log
// file would, and returns how much it wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	var n int64
	for {
		m, err := f.Write(chunk)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// diskWriters write unique keys through every node, one writer per node,
// and record what each answer was.
type diskWriters struct {
	c     *proccluster.Cluster
	mu    sync.Mutex
	acked map[string]string // key → value, for 200s
	last  [3]int            // the last status each node answered
	log   []answer          // every answer
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

type answer struct {
	at   time.Time
	code int
}

func (w *diskWriters) start() {
	for i, p := range w.c.Procs {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			hc := &http.Client{Timeout: 15 * time.Second}
			for seq := 0; ; seq++ {
				select {
				case <-w.stop:
					return
				default:
				}
				key, value := fmt.Sprintf("full/n%d-%06d", i+1, seq), fmt.Sprintf("v%d", seq)
				req, _ := http.NewRequest(http.MethodPut, "http://"+p.Addr+"/v1/kv/"+key, strings.NewReader(value))
				code := 0
				if resp, err := hc.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				w.mu.Lock()
				w.last[i] = code
				w.log = append(w.log, answer{time.Now(), code})
				if code == 200 {
					w.acked[key] = value
				}
				w.mu.Unlock()
				if code != 200 {
					time.Sleep(20 * time.Millisecond) // pace refused writes: not synchronisation
				}
			}
		}()
	}
}

func (w *diskWriters) halt() {
	w.once.Do(func() { close(w.stop); w.wg.Wait() })
}

// everyNode reports whether the last answer of every node was code.
func (w *diskWriters) everyNode(code int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, got := range w.last {
		if got != code {
			return fmt.Errorf("n%d answered %d", i+1, got)
		}
	}
	return nil
}

// notApplied checks that every write answered for d from now on was
// refused as not applied: 507, or 503 if the leader changed meanwhile.
func (w *diskWriters) notApplied(when string, d time.Duration) {
	from := time.Now()
	time.Sleep(d) // the fault's duration: answers are collected meanwhile
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.log {
		if a.at.After(from) {
			if a.code != 507 && a.code != 503 {
				w.c.TB.Fatalf("%s: a write answered %d, want 507 (or 503)", when, a.code)
			}
			n++
		}
	}
	if n == 0 {
		w.c.TB.Fatalf("%s: no write was tried", when)
	}
}

func (w *diskWriters) counts() map[int]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[int]int{}
	for _, a := range w.log {
		out[a.code]++
	}
	return out
}

// checkAcked reads every acknowledged key back (linearizably).
func (w *diskWriters) checkAcked(t *testing.T, when string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	addr := w.c.Procs[0].Addr
	for key, value := range w.acked {
		code, body := get(t, addr, "/v1/kv/"+key+"?raw")
		if code != 200 || body != value {
			t.Fatalf("%s: acknowledged %s=%s reads back as %d %q", when, key, value, code, body)
		}
	}
	t.Logf("%s: all %d acknowledged writes read back", when, len(w.acked))
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
