// Package proccluster runs real raftkvd processes on 127.0.0.1 for tests:
// it builds the binaries once, picks free ports, starts, stops, kills,
// pauses and restarts nodes, and keeps each node's log for failure reports.
// Used by tests/e2e, tests/robustness, tests/ui and tests/patroni.
//
// With Options.Isolated each node runs in its own network namespace
// (package netns), and Cut drops packets between nodes the way a real
// network partition does.
package proccluster

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/netns"
)

// BuildOptions choose how the binaries are built.
type BuildOptions struct {
	Race bool
	Tags string // e.g. "failpoints"
}

var (
	buildMu sync.Mutex
	built   = map[BuildOptions]string{} // options → directory
)

// Binary builds cmd/raftkvd and cmd/raftkv once per options and returns the
// path of the one named. root is the repository root relative to the test.
func Binary(tb testing.TB, root, name string, opts BuildOptions) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	dir, ok := built[opts]
	if !ok {
		var err error
		if dir, err = os.MkdirTemp("", "raftkv-bin-"); err != nil {
			tb.Fatal(err)
		}
		args := []string{"build"}
		if opts.Race {
			args = append(args, "-race")
		}
		if opts.Tags != "" {
			args = append(args, "-tags", opts.Tags)
		}
		for _, cmd := range []string{"raftkvd", "raftkv"} {
			out, err := exec.Command("go", append(args, "-o", filepath.Join(dir, cmd), filepath.Join(root, "cmd", cmd))...).CombinedOutput()
			if err != nil {
				tb.Fatalf("go build %s: %v\n%s", cmd, err, out)
			}
		}
		built[opts] = dir
	}
	return filepath.Join(dir, name)
}

// Cleanup removes the built binaries (call from TestMain).
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	for _, dir := range built {
		os.RemoveAll(dir)
	}
}

// FreePort asks the kernel for an unused port.
func FreePort(tb testing.TB) int {
	tb.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may hand a just-closed port out again before the node
		// it was picked for binds it: never give the same port twice.
		if !handedOut[port] {
			handedOut[port] = true
			return port
		}
	}
}

var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// Proc is one raftkvd process.
type Proc struct {
	ID, Addr, Dir string
	Bare          bool     // neither -bootstrap nor -join: waits to be added
	Args          []string // extra raftkvd flags for this node, after Options.Args
	Cmd           *exec.Cmd
	Log           *LockedBuffer
	done          chan error
	paused        bool
	exit          *exitWatch // of the current process
}

// Running reports whether the process is up (possibly paused).
func (p *Proc) Running() bool { return p.Cmd != nil }

// Options configure a cluster.
type Options struct {
	Root  string // repository root, relative to the test's directory
	Build BuildOptions
	Args  []string // extra raftkvd flags for every node
	// ClientTLS, when the nodes speak TLS, is how the harness reaches them.
	ClientTLS *tls.Config
	// TLS runs the nodes over mutual TLS with a CA made for the cluster
	// (it sets ClientTLS to a client certificate of that CA).
	TLS bool
	// NodeArgs[i] are extra flags for node i only, after Args.
	NodeArgs [][]string
	// Isolated runs every node in its own network namespace; see netns.
	// Tests check netns.Available first.
	Isolated bool
	// ACLs runs the nodes with -acl-default-policy deny and ManagementToken
	// as their initial management token and own token; the harness's own
	// requests carry it.
	ACLs bool
}

// ManagementToken is the management SecretID of clusters with Options.ACLs.
const ManagementToken = "7c9f4f59-3f3a-4a8e-9d5e-5b0e0a6f1c21"

// spareHosts are the extra namespaces an isolated cluster makes for nodes
// added later (AddBare).
const spareHosts = 2

// Cluster is a set of raftkvd processes.
type Cluster struct {
	TB    testing.TB
	Opts  Options
	Procs []*Proc
	Net   *netns.Network // with Options.Isolated
	pki   *pki           // with Options.TLS

	exitMu     sync.Mutex
	unexpected []Exit // processes that exited by themselves
	failOnExit bool   // see FailOnExit
}

// Start runs n nodes (the first bootstraps, the others join it) and waits
// until all are ready. Everything is stopped at the end of the test.
func Start(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	c := &Cluster{TB: tb, Opts: opts}
	if opts.Isolated {
		nw, err := netns.New(n + spareHosts)
		if err != nil {
			tb.Fatal(err)
		}
		c.Net = nw
		tb.Cleanup(nw.Close) // after StopAll: cleanups run last-in first-out
	}
	if opts.TLS {
		c.setupTLS()
	}
	for i := range n {
		p := &Proc{ID: "n" + strconv.Itoa(i+1), Addr: c.newAddr(i), Dir: tb.TempDir()}
		if i < len(opts.NodeArgs) {
			p.Args = opts.NodeArgs[i]
		}
		c.Procs = append(c.Procs, p)
	}
	tb.Cleanup(c.StopAll)
	for i := range c.Procs {
		c.StartProc(i)
	}
	c.WaitReady(30 * time.Second)
	c.WaitVoters(30 * time.Second)
	return c
}

// WaitVoters waits until the leader counts every running, non-bare node as
// a voter (joined nodes start as non-voters).
func (c *Cluster) WaitVoters(timeout time.Duration) {
	c.TB.Helper()
	c.WaitFor(timeout, "every node a voter", func() error {
		l := c.Leader()
		if l < 0 {
			return fmt.Errorf("no leader")
		}
		resp, err := c.Get(c.Procs[l].Addr, "/v1/operator/raft/configuration")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var cfg struct {
			Servers []struct {
				ID    string
				Voter bool
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
			return err
		}
		voters := map[string]bool{}
		for _, s := range cfg.Servers {
			voters[s.ID] = s.Voter
		}
		for _, p := range c.Procs {
			if p.Cmd != nil && !p.Bare && !voters[p.ID] {
				return fmt.Errorf("%s is not a voter yet", p.ID)
			}
		}
		return nil
	})
}

// StartProc (re)starts node i with its usual command line.
func (c *Cluster) StartProc(i int) {
	c.TB.Helper()
	p := c.Procs[i]
	// Joined nodes become voters once autopilot has seen them healthy for a
	// moment, not the default 10s.
	args := []string{"-id", p.ID, "-addr", p.Addr, "-data-dir", p.Dir, "-log-level", "debug", "-server-stabilization-time", "300ms"}
	switch {
	case p.Bare:
	case i == 0:
		args = append(args, "-bootstrap")
	default:
		args = append(args, "-join", c.Procs[0].Addr)
	}
	args = append(args, c.Opts.Args...)
	args = append(args, p.Args...)
	args = append(args, c.tlsArgs(p)...)
	if c.Opts.ACLs {
		args = append(args, "-acl-default-policy", "deny", "-acl-initial-management", ManagementToken, "-acl-token", ManagementToken)
	}
	if p.Log == nil {
		p.Log = &LockedBuffer{}
	}
	fmt.Fprintf(p.Log, "=== start %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	bin := Binary(c.TB, c.Opts.Root, "raftkvd", c.Opts.Build)
	if c.Net != nil {
		p.Cmd = c.Net.Command(i, bin, args...)
	} else {
		p.Cmd = exec.Command(bin, args...)
	}
	p.Cmd.Stderr = p.Log
	p.Cmd.SysProcAttr = procAttr()
	if err := p.Cmd.Start(); err != nil {
		c.TB.Fatal(err)
	}
	p.done = make(chan error, 1)
	p.paused = false
	p.exit = &exitWatch{}
	go c.watch(p, p.Cmd, p.done, p.exit)
}

// AddBare starts a node that belongs to no cluster until someone joins it.
func (c *Cluster) AddBare() *Proc {
	c.TB.Helper()
	i := len(c.Procs)
	if c.Net != nil && i >= c.Net.Len() {
		c.TB.Fatalf("no spare network namespace for node %d", i+1)
	}
	p := &Proc{ID: "n" + strconv.Itoa(i+1), Addr: c.newAddr(i), Dir: c.TB.TempDir(), Bare: true}
	c.Procs = append(c.Procs, p)
	c.StartProc(len(c.Procs) - 1)
	return p
}

// newAddr picks node i's address: a free loopback port, or, isolated, the
// node's own address with a fixed port (each namespace has its own ports).
func (c *Cluster) newAddr(i int) string {
	if c.Net != nil {
		return c.Net.IP(i) + ":7000"
	}
	return "127.0.0.1:" + strconv.Itoa(FreePort(c.TB))
}

// Cut replaces the network faults of an isolated cluster: packets node
// from sends to node to are dropped, for every pair given (one way: give
// both directions for a full partition). No pairs heals the network.
func (c *Cluster) Cut(pairs ...[2]int) {
	c.TB.Helper()
	if c.Net == nil {
		c.TB.Fatal("Cut needs an isolated cluster")
	}
	if err := c.Net.SetDrops(pairs...); err != nil {
		c.TB.Fatal(err)
	}
	fmt.Fprintf(c.logAll(), "=== network cut %v %s\n", pairs, time.Now().Format(time.RFC3339Nano))
}

// logAll writes to every node's log.
func (c *Cluster) logAll() io.Writer {
	var ws []io.Writer
	for _, p := range c.Procs {
		if p.Log != nil {
			ws = append(ws, p.Log)
		}
	}
	return io.MultiWriter(ws...)
}

// WaitExit waits for node i to exit by itself and returns its exit error
// (nil for exit 0). The exit is expected from the call on: one before it
// is recorded as unexpected (see FailOnExit).
func (c *Cluster) WaitExit(i int, timeout time.Duration) error {
	p := c.Procs[i]
	if p.Cmd == nil {
		return nil
	}
	p.exit.expect()
	select {
	case err := <-p.done:
		p.Cmd = nil
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.ID, timeout)
	}
}

// exitLogTail is how much of a node's log an unexpected exit keeps: enough
// for a panic's message and the panicking goroutine's stack.
const exitLogTail = 4000

// exitWatch tells a process's watcher whether its exit was asked for.
type exitWatch struct{ expected atomic.Bool }

// expect marks the exit as asked for: called before the signal is sent, so
// that the watcher, woken by the exit, never sees it unmarked.
func (w *exitWatch) expect() { w.expected.Store(true) }

// Exit is a node process that exited by itself: not through Stop, Kill or
// WaitExit (a panic, a fatal error).
type Exit struct {
	ID  string
	At  time.Time
	Err error  // how it exited (nil: status 0)
	Log string // the tail of its log, where a panic's trace is
}

func (e Exit) String() string {
	return fmt.Sprintf("%s exited by itself at %s (%v); tail of its log:\n%s", e.ID, e.At.Format(time.RFC3339Nano), e.Err, e.Log)
}

// watch waits for a process and records its exit if nobody asked for it.
// cmd.Wait returns once the process's stderr is copied, so the log it keeps
// holds everything the process wrote, a panic's trace included.
func (c *Cluster) watch(p *Proc, cmd *exec.Cmd, done chan<- error, w *exitWatch) {
	err := cmd.Wait()
	if !w.expected.Load() {
		c.recordExit(Exit{ID: p.ID, At: time.Now(), Err: err, Log: tail(p.Log.String(), exitLogTail)})
	}
	done <- err
}

func (c *Cluster) recordExit(e Exit) {
	c.exitMu.Lock()
	c.unexpected = append(c.unexpected, e)
	report := c.failOnExit
	c.exitMu.Unlock()
	if report {
		// From the watcher's goroutine, hence Errorf: the test's own
		// goroutine stops at its next wait (see WaitFor). The watcher ends
		// before Stop or Kill returns, so before the test does.
		c.TB.Errorf("%s", e)
	}
}

// FailOnExit makes a node that exits by itself fail the test at once: the
// exit is reported with the tail of the node's log as it happens, and every
// wait of the cluster (WaitFor, WaitReady, WaitLeader, WaitVoters) then
// stops the test instead of waiting out its timeout for a state the dead
// node will never reach. Exits before the call are reported by it. Without
// it such exits are only recorded, for tests that make nodes exit.
func (c *Cluster) FailOnExit() {
	c.exitMu.Lock()
	if c.failOnExit {
		c.exitMu.Unlock()
		return
	}
	c.failOnExit = true
	past := append([]Exit(nil), c.unexpected...)
	c.exitMu.Unlock()
	for _, e := range past {
		c.TB.Errorf("%s", e)
	}
}

// ExpectExit tells the cluster that node i may exit by itself from now on
// (removed from the cluster, a node shuts down): its exit is not reported.
func (c *Cluster) ExpectExit(i int) {
	if p := c.Procs[i]; p.Cmd != nil {
		p.exit.expect()
	}
}

// UnexpectedExits returns the node processes that exited by themselves so
// far, with or without FailOnExit.
func (c *Cluster) UnexpectedExits() []Exit {
	c.exitMu.Lock()
	defer c.exitMu.Unlock()
	return append([]Exit(nil), c.unexpected...)
}

// CheckExits stops the test if, with FailOnExit, a node exited by itself.
// Call it from the test's goroutine.
func (c *Cluster) CheckExits() {
	c.TB.Helper()
	if err := c.exitErr(); err != nil {
		c.TB.Fatal(err)
	}
}

func (c *Cluster) exitErr() error {
	c.exitMu.Lock()
	defer c.exitMu.Unlock()
	if !c.failOnExit || len(c.unexpected) == 0 {
		return nil
	}
	var ids []string
	for _, e := range c.unexpected {
		ids = append(ids, e.ID)
	}
	return fmt.Errorf("%s exited by itself (its log is above)", strings.Join(ids, ", "))
}

// WaitFor is testsupport.WaitFor on the cluster's test; with FailOnExit it
// also stops at once when a node exits by itself.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func() error) {
	c.TB.Helper()
	testsupport.WaitFor(c.TB, timeout, what, func() error {
		if err := c.exitErr(); err != nil {
			c.TB.Fatalf("waiting for %s: %v", what, err)
		}
		return cond()
	})
}

// Stop sends SIGTERM and returns the exit error (nil for exit 0).
func (c *Cluster) Stop(i int) error {
	p := c.Procs[i]
	if p.Cmd == nil {
		return nil
	}
	if p.paused {
		c.Resume(i)
	}
	p.exit.expect()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.Cmd.Process.Kill()
		err = <-p.done
		err = fmt.Errorf("%s did not exit within 20s of SIGTERM (killed): %v", p.ID, err)
	}
	p.Cmd = nil
	return err
}

// Kill sends SIGKILL: a crash.
func (c *Cluster) Kill(i int) {
	c.KillAtOnce(i)
}

// KillAtOnce sends SIGKILL to every node listed before waiting for any of
// them: a crash of several machines at the same moment (power loss), not
// one after another.
func (c *Cluster) KillAtOnce(idx ...int) {
	var killed []*Proc
	for _, i := range idx {
		p := c.Procs[i]
		if p.Cmd == nil {
			continue
		}
		p.exit.expect()
		_ = p.Cmd.Process.Kill()
		killed = append(killed, p)
	}
	for _, p := range killed {
		<-p.done
		fmt.Fprintf(p.Log, "=== killed %s\n", time.Now().Format(time.RFC3339Nano))
		p.Cmd = nil
	}
}

// Pause sends SIGSTOP; Resume sends SIGCONT.
func (c *Cluster) Pause(i int) {
	p := c.Procs[i]
	_ = p.Cmd.Process.Signal(syscall.SIGSTOP)
	p.paused = true
	fmt.Fprintf(p.Log, "=== paused %s\n", time.Now().Format(time.RFC3339Nano))
}

func (c *Cluster) Resume(i int) {
	p := c.Procs[i]
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	p.paused = false
	fmt.Fprintf(p.Log, "=== resumed %s\n", time.Now().Format(time.RFC3339Nano))
}

// StopAll stops every node; on failure it logs the tail of their logs.
func (c *Cluster) StopAll() {
	for i, p := range c.Procs {
		if err := c.Stop(i); err != nil {
			c.TB.Errorf("stop %s: %v", p.ID, err)
		}
		if c.TB.Failed() && p.Log != nil {
			c.TB.Logf("--- log of %s ---\n%s", p.ID, tail(p.Log.String(), 6000))
		}
	}
}

// Get asks node addr for path, over TLS when the cluster speaks it, with a
// short timeout.
func (c *Cluster) Get(addr, path string) (*http.Response, error) {
	hc := c.httpClient(time.Second, false)
	return hc.Get(c.URL(addr, path))
}

// WaitReady waits until every running, non-bare node answers /readyz 200.
func (c *Cluster) WaitReady(timeout time.Duration) {
	c.TB.Helper()
	c.WaitFor(timeout, "every node ready", func() error {
		for _, p := range c.Procs {
			if p.Cmd == nil || p.Bare {
				continue
			}
			resp, err := c.Get(p.Addr, "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s readyz: %d", p.ID, resp.StatusCode)
			}
		}
		return nil
	})
}

// Leader returns the index of the node the running nodes agree leads, or
// -1 if none is known.
func (c *Cluster) Leader() int {
	for _, p := range c.Procs {
		if p.Cmd == nil || p.paused {
			continue
		}
		resp, err := c.Get(p.Addr, "/v1/status/leader")
		if err != nil {
			continue
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		addr := strings.Trim(strings.TrimSpace(b.String()), `"`)
		for i, q := range c.Procs {
			if q.Addr == addr && addr != "" {
				return i
			}
		}
	}
	return -1
}

// WaitLeader waits for a leader and returns its index.
func (c *Cluster) WaitLeader(timeout time.Duration) int {
	c.TB.Helper()
	l := -1
	c.WaitFor(timeout, "a leader", func() error {
		if l = c.Leader(); l < 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return l
}

// LockedBuffer is a bytes.Buffer safe for a process writing its log while
// the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
