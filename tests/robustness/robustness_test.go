package robustness

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/netns"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// timing of one scenario run.
type timing struct {
	before, hold, after time.Duration
}

// The hold outlasts gapBound, so that a node stalled for a whole fault fails.
var ciTiming = timing{before: 2 * time.Second, hold: 5 * time.Second, after: 2 * time.Second}
var soakTiming = timing{before: 10 * time.Second, hold: 6 * time.Second, after: 10 * time.Second}

func TestMain(m *testing.M) {
	code := m.Run()
	proccluster.Cleanup()
	os.Exit(code)
}

// isolated reports whether the cluster runs in network namespaces (real
// packet loss), the default where the machine allows it; RAFTKV_NETNS=0
// forces the failpoint build's stand-in.
func isolated(t *testing.T) bool {
	if os.Getenv("RAFTKV_NETNS") == "0" {
		return false
	}
	if err := netns.Available(); err != nil {
		t.Logf("faults by failpoints, not packet loss: %v", err)
		return false
	}
	return true
}

var results summary

// TestRobustness runs every scenario once (CI), or RAFTKV_RUNS times each
// (measuring: `RAFTKV_RUNS=10 go test -run 'TestRobustness/partition' -v`),
// or repeatedly for RAFTKV_SOAK with longer traffic. RAFTKV_HOLD sets how
// long each fault lasts; RAFTKV_LOG_DIR keeps every run's node logs.
func TestRobustness(t *testing.T) {
	seed := uint64(time.Now().UnixNano() % 100000)
	if v, err := strconv.ParseUint(os.Getenv("RAFTKV_MIX_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("random mix seed %d (replay with RAFTKV_MIX_SEED=%d)", seed, seed)
	all := append(faults(), randomMix(seed))
	net := isolated(t)
	if d, err := time.ParseDuration(os.Getenv("RAFTKV_HOLD")); err == nil {
		ciTiming.hold, soakTiming.hold = d, d
	}
	defer func() { t.Logf("availability by scenario:\n%s", &results) }()
	soak, _ := time.ParseDuration(os.Getenv("RAFTKV_SOAK"))
	if soak == 0 {
		runs, _ := strconv.Atoi(os.Getenv("RAFTKV_RUNS"))
		for _, sc := range all {
			t.Run(sc.name, func(t *testing.T) {
				for i := range max(runs, 1) {
					if runs > 1 {
						t.Logf("run %d of %d", i+1, runs)
					}
					run(t, sc, ciTiming, net)
				}
			})
		}
		return
	}
	deadline := time.Now().Add(soak)
	for round := 1; time.Now().Before(deadline); round++ {
		for _, sc := range append(all, randomMix(seed+uint64(round))) {
			t.Run(fmt.Sprintf("%s/round-%d", sc.name, round), func(t *testing.T) { run(t, sc, soakTiming, net) })
		}
	}
}

// run starts a cluster, runs traffic through one fault and checks
// everything docs/API.md promises (Guarantees).
func run(t *testing.T, sc scenario, tm timing, isolated bool) {
	c := proccluster.Start(t, 3, proccluster.Options{
		Root:  "../..",
		Build: proccluster.BuildOptions{Tags: "failpoints"},
		// Small WAL segments: the log's head goes a segment at a time, and
		// lagging followers get snapshots as often as the thresholds say.
		Args: []string{"-snapshot-threshold", "256", "-trailing-logs", "128", "-snapshot-interval", "200ms", "-raft-wal-segment-size", "131072",
			"-session-ttl-min", shortLockTTL.String()},
		Isolated: isolated,
		TLS:      sc.tls,
		ACLs:     sc.acls,
	})
	// A node that exits by itself (a panic at a restart, a refusal of its
	// data dir) fails the run at once: every node must come back after
	// every fault.
	c.FailOnExit()
	defer func() { // a failed run keeps its logs too, whole: the tails printed do not reach back far
		if t.Failed() {
			keepLogs(t, sc.name+"-failed", c, "")
		}
	}()
	clientHC := func() *http.Client { return c.HTTPClient(0) }
	var intruderHC *http.Client
	if sc.acls {
		traffic, intruder := aclClients(t, c)
		clientHC, intruderHC = func() *http.Client { return traffic }, intruder
	}
	rec := newRecorder()
	calls := &callLog{start: rec.start}
	e := &env{t: t, c: c, rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)), tm: tm, serving: newServingLog(rec.start, 3)}
	place := sc.clients
	if place == nil {
		place = everyNode
	}
	pinned := place(e.leader(), 3)
	ctx, stop := context.WithCancel(context.Background())
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for i, at := range pinned {
		n := &node{idx: at, addr: c.Procs[at].Addr, scheme: c.URL("", ""), hc: clientHC(), log: calls}
		wg.Add(1)
		go func() { defer wg.Done(); client(ctx, i, n, rec, errs) }()
	}
	locks := &lockRecorder{start: rec.start, ttl: lockTTL}
	if sc.shortTTL {
		locks.ttl = shortLockTTL
	}
	for i := range c.Procs[:3] {
		lc := &lockClient{id: 100 + i, n: &node{idx: i, addr: c.Procs[i].Addr, scheme: c.URL("", ""), hc: clientHC()}, r: locks,
			rnd: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
		if sc.abandonSession && i == 2 {
			lc.abandonAt = rec.start.Add(tm.before)
		}
		wg.Add(1)
		go func() { defer wg.Done(); lc.run(ctx, errs) }()
	}
	watches := &watchLog{}
	var watchNodes []*node
	for i := range c.Procs[:3] {
		watchNodes = append(watchNodes, &node{idx: i, addr: c.Procs[i].Addr, scheme: c.URL("", ""), hc: clientHC()})
	}
	wg.Add(1 + len(watchNodes))
	go func() { defer wg.Done(); watchWriter(ctx, watchNodes, watches) }()
	for _, n := range watchNodes {
		go func() { defer wg.Done(); watcher(ctx, n, watches) }()
	}
	var intrusions atomic.Int64
	if intruderHC != nil {
		var nodes []*node
		for i, p := range c.Procs {
			nodes = append(nodes, &node{idx: i, addr: p.Addr, scheme: c.URL("", ""), hc: intruderHC})
		}
		wg.Add(1)
		go func() { defer wg.Done(); intrusions.Store(intrude(ctx, nodes, errs)) }()
	}
	var trafficEnd time.Duration
	stopTraffic := func() {
		if ctx.Err() == nil {
			trafficEnd = time.Since(rec.start)
		}
		stop()
		wg.Wait()
	}
	defer stopTraffic()

	if sc.ranges { // the keyspace in four ranges before the fault: every request routed
		e.operator(http.MethodPost, "/v1/operator/range/split?key=lock/r3/")
		e.operator(http.MethodPost, "/v1/operator/range/split?key=r5/")
		e.operator(http.MethodPost, "/v1/operator/range/split?key="+watchSplit)
	}
	time.Sleep(tm.before) // traffic before the fault
	if rate := float64(rec.okOps.Load()) / tm.before.Seconds(); rate < 50 {
		t.Fatalf("only %.0f ops/s before the fault (want ≥ 50)", rate)
	}
	before := rec.okOps.Load()
	sc.fault(e)
	e.heal()
	for i, p := range c.Procs { // restart anything a fault left down, unless removed
		if !p.Running() && !(strings.HasPrefix(sc.name, "member-replace") && i < 3 && !isMember(t, c, p.ID)) {
			e.start(i)
		}
	}
	healed := time.Now()
	c.WaitLeader(5 * time.Second)
	t.Logf("leader back %s after healing", time.Since(healed).Round(time.Millisecond))
	time.Sleep(tm.after) // traffic after healing
	stopTraffic()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if intruderHC != nil {
		if intrusions.Load() == 0 {
			t.Fatal("the intruder was never refused: it did not run")
		}
		t.Logf("%d writes by a read-only token refused, none accepted", intrusions.Load())
	}
	if missed, wakes := watches.check(); len(missed) > 0 {
		t.Errorf("%d watcher violations, first: %s", len(missed), missed[0])
	} else if wakes < 10 {
		t.Errorf("the watchers woke %d times: they did not run", wakes)
	} else {
		t.Logf("%s: watchers woke %d times for %d writes under %s, none missed", sc.name, wakes, len(watches.writes), watchPrefix)
	}
	avail := measure(calls, e.serving, trafficEnd, clientTimeout)
	results.add(sc.name, avail)
	t.Logf("%s: %s", sc.name, avail)
	keepLogs(t, sc.name, c, fmt.Sprintf("%s\ntraffic started %s\n", avail, rec.start.Format(time.RFC3339Nano)))
	if avail.gap > gapBound {
		t.Errorf("n%d completed no request for %s from %s (bound %s)", avail.gapNode+1, avail.gap.Round(time.Millisecond), avail.gapAt.Round(time.Millisecond), gapBound)
	}
	if avail.refusal > refusalBound {
		t.Errorf("a node cut off from the majority took %s to answer (bound %s)", avail.refusal.Round(time.Millisecond), refusalBound)
	}
	converge(t, c)
	mortal := lockCheckSetup(t, c, locks)

	// Every acknowledged write must survive a crash of the whole cluster:
	// kill -9 everything, restart, and read every key as the last operations
	// of the history.
	running := []int{}
	for i, p := range c.Procs {
		if p.Running() {
			running = append(running, i)
			c.Kill(i)
		}
	}
	for _, i := range running {
		c.StartProc(i)
	}
	c.WaitReady(30 * time.Second)
	final := &node{addr: c.Procs[running[0]].Addr, scheme: c.URL("", ""), hc: c.HTTPClient(0)}
	keys := rec.keys()
	for _, k := range keys {
		var o output
		var ok bool
		testsupport.WaitFor(t, 10*time.Second, "final read of "+k, func() error {
			call := rec.now()
			if o, ok = final.get(context.Background(), k, false); !ok {
				return fmt.Errorf("read failed")
			}
			rec.record(99, input{Op: "get", Key: k}, call, o, rec.now())
			return nil
		})
	}
	check(t, sc.name, rec, c)
	t.Logf("%s: %d ops recorded (%d during the fault and after), %d with unknown outcome, %d keys",
		sc.name, len(rec.ops), int64(len(rec.ops))-before, rec.unknown.Load(), len(keys))
	checkLocks(t, sc, locks, mortal, c)
}

// keepLogs writes every node's log and the run's figures to a new directory
// under RAFTKV_LOG_DIR, if set: for studying where a failover's time went.
func keepLogs(t *testing.T, name string, c *proccluster.Cluster, figures string) {
	root := os.Getenv("RAFTKV_LOG_DIR")
	if root == "" {
		return
	}
	dir, err := os.MkdirTemp(root, strings.ReplaceAll(name, "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Procs {
		if p.Log != nil {
			os.WriteFile(filepath.Join(dir, p.ID+".log"), []byte(p.Log.String()), 0o644)
		}
	}
	os.WriteFile(filepath.Join(dir, "figures.txt"), []byte(figures), 0o644)
}

func isMember(t *testing.T, c *proccluster.Cluster, id string) bool {
	l := c.WaitLeader(20 * time.Second)
	resp, err := c.HTTPClient(10 * time.Second).Get(c.URL(c.Procs[l].Addr, "/v1/operator/raft/configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), `"ID":"`+id+`"`)
}

func (r *recorder) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, op := range r.ops {
		seen[op.Input.(input).Key] = true
	}
	for k := range r.attempted {
		seen[k] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// converge waits until every running node holds the same data.
func converge(t *testing.T, c *proccluster.Cluster) {
	testsupport.WaitFor(t, 10*time.Second, "all nodes to converge", func() error {
		var first [32]byte
		for i, p := range c.Procs {
			if !p.Running() {
				continue
			}
			resp, err := c.HTTPClient(10 * time.Second).Get(c.URL(p.Addr, "/v1/kv/?recurse&stale"))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			sum := sha256.Sum256(body)
			if i == 0 || first == [32]byte{} {
				first = sum
			} else if sum != first {
				return fmt.Errorf("%s differs", p.ID)
			}
		}
		return nil
	})
}

// check runs porcupine and the stale-read check; on failure it writes the
// visualisation and the node logs to a temp dir and names it.
func check(t *testing.T, name string, rec *recorder, c *proccluster.Cluster) {
	m := model.ToModel()
	res, info := porcupine.CheckOperationsVerbose(m, rec.ops, 2*time.Minute)
	if res == porcupine.Ok && len(rec.staleBad) == 0 {
		return
	}
	for _, s := range rec.staleBad {
		t.Error(s)
	}
	if res != porcupine.Ok {
		t.Errorf("linearizability check: %v", res)
	}
	keepFailure(t, name, m, info, c)
}

// keepFailure writes the visualisation of a failed check and the node logs
// to a temp dir and names it.
func keepFailure(t *testing.T, name string, m porcupine.Model, info porcupine.LinearizationInfo, c *proccluster.Cluster) {
	dir, err := os.MkdirTemp("", "raftkv-robustness-"+strings.ReplaceAll(name, "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := porcupine.VisualizePath(m, info, filepath.Join(dir, "history.html")); err != nil {
		t.Logf("visualisation: %v", err)
	}
	for _, p := range c.Procs {
		if p.Log != nil {
			os.WriteFile(filepath.Join(dir, p.ID+".log"), []byte(p.Log.String()), 0o644)
		}
	}
	t.Errorf("history visualisation and node logs in %s", dir)
}
