package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary builds cmd/raftkvd and cmd/raftkv once for the whole test binary
// and returns the path of the one named.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "raftkv-e2e-"); buildErr != nil {
			return
		}
		// Race-checked binaries by default; RAFTKV_E2E_RACE=0 builds plain
		// ones, for measuring (the race detector multiplies memory and CPU).
		flags := []string{"build", "-race"}
		if os.Getenv("RAFTKV_E2E_RACE") == "0" {
			flags = []string{"build"}
		}
		for _, cmd := range []string{"raftkvd", "raftkv"} {
			out, err := exec.Command("go", append(flags, "-o", filepath.Join(binDir, cmd), "../../cmd/"+cmd)...).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func raftkvdBinary(t *testing.T) string { return binary(t, "raftkvd") }

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// freePort asks the kernel for an unused port.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type proc struct {
	id, addr, dir string
	bare          bool // neither -bootstrap nor -join: waits to be added
	cmd           *exec.Cmd
	log           *bytes.Buffer
	done          chan error
}

type cluster struct {
	t     *testing.T
	procs []*proc
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := range n {
		p := &proc{id: "n" + strconv.Itoa(i+1), addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), dir: t.TempDir()}
		c.procs = append(c.procs, p)
	}
	t.Cleanup(c.stopAll)
	for i := range c.procs {
		c.start(i)
	}
	c.waitReady()
	return c
}

func (c *cluster) start(i int) {
	c.t.Helper()
	p := c.procs[i]
	args := []string{"-id", p.id, "-addr", p.addr, "-data-dir", p.dir, "-log-level", "debug"}
	switch {
	case p.bare:
	case i == 0:
		args = append(args, "-bootstrap")
	default:
		args = append(args, "-join", c.procs[0].addr)
	}
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(raftkvdBinary(c.t), args...)
	p.cmd.Stderr = &lockedWriter{w: p.log}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
}

// stop sends SIGTERM and returns the exit error.
func (c *cluster) stop(i int) error {
	p := c.procs[i]
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		err = <-p.done
		err = fmt.Errorf("%s did not exit within 20s of SIGTERM (killed): %v", p.id, err)
	}
	p.cmd = nil
	return err
}

func (c *cluster) stopAll() {
	for i, p := range c.procs {
		if err := c.stop(i); err != nil {
			c.t.Errorf("stop %s: %v", p.id, err)
		}
		if c.t.Failed() && p.log != nil {
			c.t.Logf("--- log of %s ---\n%s", p.id, tail(p.log.String(), 6000))
		}
	}
}

// addBare starts a node that belongs to no cluster until someone joins it.
func (c *cluster) addBare() *proc {
	c.t.Helper()
	p := &proc{id: "n" + strconv.Itoa(len(c.procs)+1), addr: "127.0.0.1:" + strconv.Itoa(freePort(c.t)), dir: c.t.TempDir(), bare: true}
	c.procs = append(c.procs, p)
	c.start(len(c.procs) - 1)
	return p
}

func (c *cluster) waitReady() {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "every node ready", func() error {
		for _, p := range c.procs {
			if p.cmd == nil || p.bare {
				continue
			}
			resp, err := http.Get("http://" + p.addr + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s readyz: %d", p.id, resp.StatusCode)
			}
		}
		return nil
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %v", what, err)
		case <-tick.C:
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
