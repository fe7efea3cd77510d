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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/proccluster"
)

// timing of one scenario run.
type timing struct {
	before, hold, after time.Duration
}

var ciTiming = timing{before: 2 * time.Second, hold: 3 * time.Second, after: 2 * time.Second}
var soakTiming = timing{before: 10 * time.Second, hold: 6 * time.Second, after: 10 * time.Second}

// env is what a fault works with.
type env struct {
	t   *testing.T
	c   *proccluster.Cluster
	rnd *rand.Rand
	tm  timing
}

func (e *env) hold() { time.Sleep(e.tm.hold) } // the fault's duration, not synchronisation

func (e *env) leader() int { return e.c.WaitLeader(20 * time.Second) }

func (e *env) follower() int {
	l := e.leader()
	for i, p := range e.c.Procs {
		if i != l && p.Running() {
			return i
		}
	}
	e.t.Fatal("no follower")
	return -1
}

// partition makes each listed pair unable to talk (both directions).
func (e *env) partition(pairs ...[2]int) {
	blocked := map[int][]string{}
	for _, p := range pairs {
		blocked[p[0]] = append(blocked[p[0]], e.c.Procs[p[1]].Addr)
		blocked[p[1]] = append(blocked[p[1]], e.c.Procs[p[0]].Addr)
	}
	for i, p := range e.c.Procs {
		if p.Running() {
			e.putBlocked(p.Addr, strings.Join(blocked[i], ","))
		}
	}
}

func (e *env) heal() { e.partition() }

// putBlocked sets a node's blocked peers, waiting for a node that was just
// restarted to listen.
func (e *env) putBlocked(addr, list string) {
	proccluster.WaitFor(e.t, 20*time.Second, "failpoint on "+addr, func() error {
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/debug/failpoints/blocked", strings.NewReader(list))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			e.t.Fatalf("failpoint on %s: status %d (built without -tags failpoints?)", addr, resp.StatusCode)
		}
		return nil
	})
}

func (e *env) operator(method, path string) {
	l := e.c.Procs[e.leader()]
	req, _ := http.NewRequest(method, "http://"+l.Addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
}

// waitLog waits until node i's log, past offset, contains s.
func (e *env) waitLog(i, offset int, s string, timeout time.Duration) {
	proccluster.WaitFor(e.t, timeout, fmt.Sprintf("%q in %s's log", s, e.c.Procs[i].ID), func() error {
		if !strings.Contains(e.c.Procs[i].Log.String()[offset:], s) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

type scenario struct {
	name  string
	fault func(e *env)
}

func faults() []scenario {
	return []scenario{
		{"kill-leader", func(e *env) { l := e.leader(); e.c.Kill(l); e.hold(); e.c.StartProc(l) }},
		{"kill-follower", func(e *env) { f := e.follower(); e.c.Kill(f); e.hold(); e.c.StartProc(f) }},
		{"kill-all", func(e *env) {
			for i := range e.c.Procs {
				e.c.Kill(i)
			}
			for i := range e.c.Procs {
				e.c.StartProc(i)
			}
		}},
		{"pause-leader", func(e *env) { l := e.leader(); e.c.Pause(l); e.hold(); e.c.Resume(l) }},
		{"partition-leader", func(e *env) {
			l := e.leader()
			var pairs [][2]int
			for i := range e.c.Procs {
				if i != l {
					pairs = append(pairs, [2]int{l, i})
				}
			}
			e.partition(pairs...)
			e.hold()
			e.heal()
		}},
		{"bridge", func(e *env) {
			l, f := e.leader(), e.follower()
			e.partition([2]int{l, f}) // the third node sees both
			e.hold()
			e.heal()
		}},
		{"snapshot-install", func(e *env) {
			f := e.follower()
			l := e.leader()
			var pairs [][2]int
			for i := range e.c.Procs {
				if i != f {
					pairs = append(pairs, [2]int{f, i})
				}
			}
			offL, offF := len(e.c.Procs[l].Log.String()), len(e.c.Procs[f].Log.String())
			e.partition(pairs...)
			e.waitLog(l, offL, "compacting logs", 60*time.Second) // the others moved past it
			e.hold()
			e.heal()
			e.waitLog(f, offF, "restored snapshot", 30*time.Second)
		}},
		{"member-replace", func(e *env) {
			f := e.follower()
			e.operator(http.MethodDelete, "/v1/operator/raft/peer?id="+e.c.Procs[f].ID)
			e.c.Kill(f)
			fresh := e.c.AddBare()
			e.operator(http.MethodPut, "/v1/operator/raft/peer?id="+fresh.ID+"&address="+fresh.Addr)
			e.hold()
		}},
		{"leadership-transfers", func(e *env) {
			for range 5 {
				before := e.leader()
				e.operator(http.MethodPost, "/v1/operator/raft/transfer-leader")
				proccluster.WaitFor(e.t, 20*time.Second, "leadership to move", func() error {
					if l := e.c.Leader(); l < 0 || l == before {
						return fmt.Errorf("leader %d", l)
					}
					return nil
				})
			}
		}},
	}
}

// randomMix chains three faults chosen at random.
func randomMix(seed uint64) scenario {
	return scenario{fmt.Sprintf("random-mix-%d", seed), func(e *env) {
		pool := faults()
		var chosen []scenario
		for _, s := range pool {
			if s.name != "member-replace" && s.name != "snapshot-install" && s.name != "kill-all" {
				chosen = append(chosen, s)
			}
		}
		for range 3 {
			s := chosen[e.rnd.IntN(len(chosen))]
			e.t.Logf("random mix: %s", s.name)
			s.fault(e)
			e.c.WaitLeader(20 * time.Second)
			time.Sleep(time.Second) // traffic between faults
		}
	}}
}

func TestMain(m *testing.M) {
	code := m.Run()
	proccluster.Cleanup()
	os.Exit(code)
}

func TestRobustness(t *testing.T) {
	all := append(faults(), randomMix(uint64(time.Now().UnixNano()%1000)))
	soak, _ := time.ParseDuration(os.Getenv("RAFTKV_SOAK"))
	if soak == 0 {
		for _, sc := range all {
			t.Run(sc.name, func(t *testing.T) { run(t, sc, ciTiming) })
		}
		return
	}
	deadline := time.Now().Add(soak)
	for round := 1; time.Now().Before(deadline); round++ {
		for _, sc := range append(all, randomMix(uint64(round))) {
			t.Run(fmt.Sprintf("%s/round-%d", sc.name, round), func(t *testing.T) { run(t, sc, soakTiming) })
		}
	}
}

// run starts a cluster, runs traffic through one fault and checks
// everything API.md §3 promises.
func run(t *testing.T, sc scenario, tm timing) {
	c := proccluster.Start(t, 3, proccluster.Options{
		Root:  "../..",
		Build: proccluster.BuildOptions{Tags: "failpoints"},
		Args:  []string{"-snapshot-threshold", "256", "-trailing-logs", "128", "-snapshot-interval", "200ms"},
	})
	e := &env{t: t, c: c, rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)), tm: tm}
	rec := newRecorder()
	ctx, stop := context.WithCancel(context.Background())
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for i := range 6 {
		n := &node{addr: c.Procs[i%3].Addr, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
		wg.Add(1)
		go func() { defer wg.Done(); client(ctx, i, n, rec, errs) }()
	}
	stopTraffic := func() { stop(); wg.Wait() }
	defer stopTraffic()

	time.Sleep(tm.before) // traffic before the fault
	if rate := float64(rec.okOps.Load()) / tm.before.Seconds(); rate < 50 {
		t.Fatalf("only %.0f ops/s before the fault (want ≥ 50)", rate)
	}
	before := rec.okOps.Load()
	sc.fault(e)
	e.heal()
	for i, p := range c.Procs { // restart anything a fault left down, unless removed
		if !p.Running() && !(sc.name == "member-replace" && i < 3 && !isMember(t, c, p.ID)) {
			c.StartProc(i)
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
	converge(t, c)

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
	final := &node{addr: c.Procs[running[0]].Addr, hc: &http.Client{}}
	keys := rec.keys()
	for _, k := range keys {
		var o output
		var ok bool
		proccluster.WaitFor(t, 10*time.Second, "final read of "+k, func() error {
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
}

func isMember(t *testing.T, c *proccluster.Cluster, id string) bool {
	l := c.WaitLeader(20 * time.Second)
	resp, err := http.Get("http://" + c.Procs[l].Addr + "/v1/operator/raft/configuration")
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
	proccluster.WaitFor(t, 10*time.Second, "all nodes to converge", func() error {
		var first [32]byte
		for i, p := range c.Procs {
			if !p.Running() {
				continue
			}
			resp, err := http.Get("http://" + p.Addr + "/v1/kv/?recurse&stale")
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
	dir, err := os.MkdirTemp("", "raftkv-robustness-"+name+"-")
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
	for _, s := range rec.staleBad {
		t.Error(s)
	}
	if res != porcupine.Ok {
		t.Errorf("linearizability check: %v", res)
	}
	t.Errorf("history visualisation and node logs in %s", dir)
}
