package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	rkclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
	"github.com/raftkv/raftkv/kv"
)

// TestLockHoldersView checks the lock promise from the holders' side:
// raftkv's own lock clients (client.Lock, Election, Semaphore, raftkv lock)
// are told that they lost a lock, on their own clock, before the cluster
// releases it (invalidates the session), and so before anyone else can get
// it, whatever the TTL, lock-delay, checks, and node they go through; and
// so is consul/api's Lock, with its defaults, through a node cut off from
// the leader (its monitor fails: docs/API.md).
//
// Holders of several kinds take one key each through one node; contenders
// of the same kind wait for the same keys through the other nodes; then the
// holders' node is cut off by a real partition for longer than TTL plus
// lock-delay. Each holder records when it believed it held its lock; a
// watcher on the majority side reads every key linearizably throughout.
// Checked: no two holders of a key believed they held it at once; no read
// saw a key no longer its holder's before that holder was told; the locks
// whose holders cannot renew moved.
//
//	go test -run TestLockHoldersView ./tests/robustness      # CI: TTL 20s and 1s, a follower cut off
//	RAFTKV_SOAK=1 go test -run TestLockHoldersView ./tests/robustness
//	    # soak (RAFTKV_SOAK set to anything): TTL 60s (RAFTKV_LOCKVIEW_TTL sets
//	    # another, and also means soak), a follower, then the leader, cut off
//	    # at a random point of the renew period (RAFTKV_LOCKVIEW_CUT=leader picks)
func TestLockHoldersView(t *testing.T) {
	m := lockViewConfig(t)
	for _, cut := range m.cuts {
		t.Run("cut-"+cut, func(t *testing.T) { runLockView(t, m, cut == "leader") })
	}
	// Traefik's valkeyrie store and others use 1s TTLs (with
	// -session-ttl-min 1s): the promise holds at the shortest TTL too.
	short := m
	short.ttl = kv.LowestSessionTTLMin
	for _, cut := range m.cuts {
		t.Run("ttl-1s/cut-"+cut, func(t *testing.T) { runLockView(t, short, cut == "leader") })
	}
}

// lockViewMode: CI, or soak (longer TTL, both cuts, the cut at a random
// point of the holders' renew period).
type lockViewMode struct {
	ttl  time.Duration
	cuts []string // "follower", "leader"
	soak bool
}

func lockViewConfig(t *testing.T) lockViewMode {
	m := lockViewMode{ttl: 20 * time.Second, cuts: []string{"follower"}, soak: os.Getenv("RAFTKV_SOAK") != ""}
	if m.soak {
		m.ttl = 60 * time.Second
	}
	if v := os.Getenv("RAFTKV_LOCKVIEW_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < kv.DefaultSessionTTLMin || d > 5*time.Minute {
			t.Fatalf("RAFTKV_LOCKVIEW_TTL=%q: want a duration from %s to 5m", v, kv.DefaultSessionTTLMin)
		}
		m.ttl, m.soak = d, true
	}
	if m.soak {
		m.cuts = []string{"follower", "leader"}
	}
	if v := os.Getenv("RAFTKV_LOCKVIEW_CUT"); v != "" {
		m.cuts = strings.Split(v, ",")
		for _, c := range m.cuts {
			if c != "follower" && c != "leader" {
				t.Fatalf("RAFTKV_LOCKVIEW_CUT=%q: follower, leader, or both comma-separated", v)
			}
		}
	}
	return m
}

// lockViewKeys: one key per kind of holder, for sessions of ttl.
func lockViewKeys(ttl time.Duration) []keySpec {
	keys := []keySpec{
		// (a): the holder's only endpoint is the node cut off: it cannot
		// renew, must be told after TTL, and the lock must move.
		{name: "lock-delay-0", kind: kindLock, lockDelay: noLockDelay, mustMove: true},
		{name: "lock-delay-5s", kind: kindLock, lockDelay: 5 * time.Second, mustMove: true},
		{name: "election", kind: kindElection, mustMove: true}, // lock-delay 15s, as raftkv elect
		{name: "semaphore", kind: kindSemaphore, mustMove: true},
		// (d): a session without node checks: only its TTL ends it.
		{name: "no-checks-delay-5s", kind: kindOwnSession, lockDelay: 5 * time.Second, mustMove: true},
		// (b): the holder fails over to the other nodes and keeps renewing.
		{name: "failover-delay-0", kind: kindLock, lockDelay: noLockDelay, failover: true},
		// (c): raftkv lock has no lock-delay flag: the default, 15s.
		{name: "cli", kind: kindCLI, mustMove: true},
	}
	// (e): consul/api's Lock, its defaults (lock-delay 15s, MonitorRetries
	// 0), keeps no deadline: told when its monitor fails on the node cut
	// off, once that node has held the query for a leader as Consul does
	// (7s) after noticing the loss. The session goes no sooner than 1.5×TTL
	// after the cut (its last renew was at most TTL/2 before, and the
	// cluster waits 2×TTL): the docs promise consul/api's holders only
	// TTLs for which that is later, every TTL from Consul's default minimum
	// (10s) up.
	if 3*ttl/2 > kv.DefaultLeaderHold+3*time.Second {
		keys = append(keys, keySpec{name: "consul-api", kind: kindConsul, mustMove: true})
	}
	return keys
}

// viewHolder is a holder or contender of any kind.
type viewHolder interface {
	acquired() (tenure, bool)
}

// lockView is one run of the scenario.
type lockView struct {
	t      *testing.T
	c      *proccluster.Cluster
	e      *env
	ttl    time.Duration
	cut    int   // the node the holders go through, cut off
	others []int // the majority side
	bin    string
	dir    string
	specs  []keySpec

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hist   viewHistory
	taps   []*sessionTap
	// watchHC is the watcher's HTTP client
	watchHC *http.Client
	gos     []*goHolder
	clis    []*cliHolder
	consuls []*consulHolder
	holder  map[string]viewHolder // per key
	rival   map[string]viewHolder // per key: the contender

	began, cutAt, healAt time.Time
	stopOnce             sync.Once
}

func runLockView(t *testing.T, m lockViewMode, cutLeader bool) {
	ttl := m.ttl
	// Registered first, so checked last: after the nodes stopped, nothing
	// the scenario started may still run.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	c := proccluster.Start(t, 3, proccluster.Options{
		Root:  "../..",
		Build: proccluster.BuildOptions{Tags: "failpoints"},
		Args: []string{"-snapshot-threshold", "256", "-trailing-logs", "128", "-snapshot-interval", "200ms", "-raft-wal-segment-size", "131072", // as run's
			"-session-ttl-min", kv.LowestSessionTTLMin.String()},
		Isolated: isolated(t),
	})
	e := &env{t: t, c: c, rnd: rand.New(rand.NewPCG(1, 2)), serving: newServingLog(time.Now(), len(c.Procs))}
	cut, what := e.follower(), "a follower"
	if cutLeader {
		cut, what = e.leader(), "the leader"
	}
	v := &lockView{t: t, c: c, e: e, ttl: ttl, cut: cut, others: e.others(cut), dir: t.TempDir(), specs: lockViewKeys(ttl),
		bin: proccluster.Binary(t, "../..", "raftkv", proccluster.BuildOptions{Tags: "failpoints"}), began: now(),
		holder: map[string]viewHolder{}, rival: map[string]viewHolder{}}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	t.Cleanup(v.stop) // before the nodes stop (cleanups run last-in first-out)
	defer v.finish()  // the checks run even when the scenario fails half-way
	t.Logf("TTL %s; holders through %s (%s), contenders through the others", ttl, c.Procs[cut].ID, what)

	v.startHolders()
	v.startContenders()
	if m.soak {
		// In CI the holders' last renew before the cut is their create,
		// just before it: the latest a client gives up, so the widest
		// window for a server that releases early. Soak varies it.
		phase := rand.N(ttl / 2)
		t.Logf("cutting off %s into the holders' renew period", phase.Round(time.Millisecond))
		time.Sleep(phase) // the fault's timing, not synchronisation
	}
	v.partition()
	v.waitMoved()
}

// startHolders starts one holder per key through the node to be cut off,
// and waits until each holds its lock and the watcher sees it hold it.
func (v *lockView) startHolders() {
	for _, s := range v.specs {
		eps := []int{v.cut}
		if s.failover {
			eps = append(eps, v.others...)
		}
		v.holder[s.name] = v.startOne(s, "holder", eps)
	}
	testsupport.WaitFor(v.t, 30*time.Second, "every holder to hold its lock", func() error {
		for _, s := range v.specs {
			if _, ok := v.holder[s.name].acquired(); !ok {
				return fmt.Errorf("%s not yet", s.name)
			}
		}
		return nil
	})
	held := now()
	v.watchHC = v.c.HTTPClient(0)
	watcher := &node{idx: v.others[0], addr: v.c.Procs[v.others[0]].Addr, scheme: v.c.URL("", ""), hc: v.watchHC}
	v.wg.Add(1)
	go func() { defer v.wg.Done(); watch(v.ctx, watcher, v.specs, &v.hist) }()
	// The watcher must see each holder as the holder: this also proves
	// that the checks recognise every kind's tenure.
	testsupport.WaitFor(v.t, 10*time.Second, "the watcher to see every holder hold its key", func() error {
		for _, s := range v.specs {
			t, _ := v.holder[s.name].acquired()
			if o, ok := v.hist.lastRead(s.name); !ok || o.Call.Before(held) || !o.holds(t) {
				return fmt.Errorf("%s: holder %s, last read %s", s.name, t, describeHeld(o.Held))
			}
		}
		return nil
	})
	v.checkFailoverSession()
}

// checkFailoverSession: the failover holder's session must belong to the
// node cut off (its first endpoint), or the scenario tests nothing.
func (v *lockView) checkFailoverSession() {
	for _, h := range v.gos {
		if !h.spec.failover || !strings.HasPrefix(h.name, "holder") {
			continue
		}
		t, _ := h.acquired()
		ctx, cancel := context.WithTimeout(v.ctx, 10*time.Second)
		s, _, err := h.cl.SessionInfo(ctx, t.Session)
		cancel()
		if err != nil {
			v.t.Fatalf("%s: session %s: %v", h.spec.name, t.Session, err)
		}
		if s.Node != v.c.Procs[v.cut].ID {
			v.t.Fatalf("%s: the holder's session belongs to %s, not to %s, the node cut off", h.spec.name, s.Node, v.c.Procs[v.cut].ID)
		}
	}
}

// startContenders starts, per key, a contender of the same kind through a
// node of the majority side.
func (v *lockView) startContenders() {
	for i, s := range v.specs {
		v.rival[s.name] = v.startOne(s, "contender", []int{v.others[i%len(v.others)]})
	}
}

// startOne starts a holder or contender of s's kind through the nodes eps.
func (v *lockView) startOne(s keySpec, role string, eps []int) viewHolder {
	var ids, addrs []string
	for _, i := range eps {
		ids = append(ids, v.c.Procs[i].ID)
		addrs = append(addrs, v.c.Procs[i].Addr)
	}
	name := role + " via " + strings.Join(ids, ",")
	if s.kind == kindConsul {
		if len(addrs) != 1 {
			v.t.Fatalf("%s: a consul/api client talks to one node, not %s", s.name, strings.Join(ids, ","))
		}
		h, err := newConsulHolder(s, name, role == "contender", addrs[0], v.ttl)
		if err != nil {
			v.t.Fatal(err)
		}
		v.taps, v.consuls = append(v.taps, h.tap), append(v.consuls, h)
		v.wg.Add(1)
		go func() { defer v.wg.Done(); h.run(v.ctx, &v.hist, v.t.Logf) }()
		return h
	}
	if s.kind == kindCLI {
		h, err := startCLI(v.bin, v.dir, s, name, strings.Join(addrs, ","), v.ttl)
		if err != nil {
			v.t.Fatal(err)
		}
		v.clis = append(v.clis, h)
		return h
	}
	tap := newSessionTap()
	cl, err := rkclient.New(rkclient.Config{Endpoints: addrs, HTTPClient: &http.Client{Transport: tap}})
	if err != nil {
		v.t.Fatal(err)
	}
	h := &goHolder{spec: s, name: name, cl: cl, tap: tap, ttl: v.ttl}
	v.taps, v.gos = append(v.taps, tap), append(v.gos, h)
	v.wg.Add(1)
	go func() { defer v.wg.Done(); h.run(v.ctx, &v.hist, v.t.Logf) }()
	return h
}

// partition cuts the holders' node off for longer than TTL plus the
// longest lock-delay: long enough for every lock whose holder cannot renew
// to move, if the session goes at TTL after the holder's last renew.
func (v *lockView) partition() {
	delay := time.Duration(0)
	for _, s := range v.specs {
		if s.mustMove {
			delay = max(delay, s.effectiveLockDelay())
		}
	}
	hold := v.ttl + delay + 10*time.Second
	if l := v.c.Leader(); l >= 0 {
		v.t.Logf("cutting off %s (the leader is %s) for %s", v.c.Procs[v.cut].ID, v.c.Procs[l].ID, hold)
	}
	v.e.serving.set(v.cut, cutOff)
	v.e.isolate(v.cut)
	v.cutAt = now()
	time.Sleep(hold) // the partition's duration, not synchronisation
	v.e.heal()
	v.healAt = now()
}

// waitMoved waits until every contender whose holder cannot renew holds its
// lock: at the latest 2×TTL (a session without node checks) plus
// lock-delay after the cut, and a margin.
func (v *lockView) waitMoved() {
	deadline := v.cutAt.Add(2*v.ttl + kv.DefaultLockDelay + 15*time.Second)
	testsupport.WaitFor(v.t, max(time.Until(deadline), 5*time.Second), "every lock whose holder was cut off to move", func() error {
		for _, s := range v.specs {
			if _, ok := v.rival[s.name].acquired(); s.mustMove && !ok {
				return fmt.Errorf("%s: the contender has not got it", s.name)
			}
		}
		return nil
	})
}

// stop ends every holder (those holding unlock), every raftkv lock
// process, and the watcher, and waits for them.
func (v *lockView) stop() {
	v.stopOnce.Do(func() {
		v.cancel()
		var wg sync.WaitGroup
		for _, h := range v.clis {
			wg.Add(1)
			go func() { defer wg.Done(); h.stop() }()
		}
		wg.Wait()
		v.wg.Wait()
		for _, tap := range v.taps {
			tap.next.CloseIdleConnections()
		}
		if v.watchHC != nil {
			v.watchHC.CloseIdleConnections()
		}
	})
}

// finish stops the scenario, then checks and reports its history.
func (v *lockView) finish() {
	v.stop()
	hs, reads := v.hist.snapshot()
	for _, h := range v.clis {
		x, ok, err := h.holding()
		if err != nil {
			v.t.Error(err)
		}
		if ok {
			x.Tenure.Session = sessionOf(reads[x.Key], x.Tenure.Index)
			hs = append(hs, x)
		}
	}
	report := v.check(hs, reads)
	v.t.Logf("lock holders' view:\n%s", report)
	keepLogs(v.t, v.t.Name(), v.c, report)
	if v.t.Failed() {
		v.keep(report)
	}
}

// sessionOf finds, for a raftkv lock command that knows only its lock
// index, its session in the reads (for the report, and a stricter check).
func sessionOf(reads []observation, index uint64) string {
	for _, r := range reads {
		for _, t := range r.Held {
			if t.Index == index {
				return t.Session
			}
		}
	}
	return ""
}

// check runs every checker over the history, failing the test for each
// broken promise, and returns the report.
func (v *lockView) check(hs []holding, reads map[string][]observation) string {
	var b strings.Builder
	zero := v.cutAt
	if zero.IsZero() {
		zero = v.began
	}
	rel := func(at time.Time) string { return fmt.Sprintf("%+.3fs", at.Sub(zero).Seconds()) }
	fmt.Fprintf(&b, "times from the cut (%s cut off at %s, healed at %s)\n", v.c.Procs[v.cut].ID, rel(v.cutAt), rel(v.healAt))
	bad := func(format string, args ...any) {
		v.t.Errorf(format, args...)
		fmt.Fprintf(&b, "FAIL: "+format+"\n", args...)
	}
	gaps := longestGaps(hs)
	for _, s := range v.specs {
		v.describeKey(&b, s, hs, reads[s.name], gaps[s.name], rel)
	}
	ov := overlaps(hs)
	for _, o := range ov {
		bad("overlap: %s (from %s)", o, rel(latest(o.A.Start, o.B.Start)))
	}
	early := releasesBeforeTold(hs, reads)
	for _, e := range early {
		bad("released before told: %s; read returned at %s, told at %s", e, rel(e.Read.Return), rel(e.H.End))
	}
	var must []string
	for _, s := range v.specs {
		if s.mustMove {
			must = append(must, s.name)
		}
	}
	if !v.healAt.IsZero() { // the scenario got as far as the partition
		for _, k := range unmoved(hs, must) {
			bad("%s: the lock never reached the contender", k)
		}
	}
	v.checkFailover(&b, hs, rel, bad)
	fmt.Fprintf(&b, "summary: %d overlaps%s, %d releases before told%s, %s\n", len(ov), longestOverlap(ov), len(early), longestLead(early), longestGap(gaps))
	return b.String()
}

func longestGap(gaps map[string]gap) string {
	key := ""
	for k, g := range gaps {
		if key == "" || g.Len() > gaps[key].Len() || g.Len() == gaps[key].Len() && k < key {
			key = k
		}
	}
	if key == "" {
		return "no key changed hands with a time without holder"
	}
	return fmt.Sprintf("longest time with no holder %s (%s)", gaps[key].Len().Round(time.Millisecond), key)
}

func longestOverlap(ov []overlap) string {
	if len(ov) == 0 {
		return ""
	}
	return fmt.Sprintf(" (longest %s, %s)", ov[0].By.Round(time.Millisecond), ov[0].A.Key)
}

func longestLead(early []earlyRelease) string {
	if len(early) == 0 {
		return ""
	}
	return fmt.Sprintf(" (longest %s, %s)", early[0].Lead.Round(time.Millisecond), early[0].H.Key)
}

// describeKey writes a key's holdings, when the watcher first saw each
// holder's lock gone, and the longest time with no holder.
func (v *lockView) describeKey(b *strings.Builder, s keySpec, hs []holding, reads []observation, g gap, rel func(time.Time) string) {
	delay := s.effectiveLockDelay().String()
	if s.lockDelay == noLockDelay {
		delay = "0"
	}
	fmt.Fprintf(b, "%s (%s, lock-delay %s):\n", s.name, s.kind, delay)
	var mine []holding
	for _, h := range hs {
		if h.Key == s.name {
			mine = append(mine, h)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].Start.Before(mine[j].Start) })
	for _, h := range mine {
		fmt.Fprintf(b, "  %-28s [%s, %s] %-8s %s", h.Holder, rel(h.Start), rel(h.End), h.How, h.Tenure)
		if gone, ok := firstGone(reads, h); ok {
			fmt.Fprintf(b, "; the cluster released it by %s", rel(gone))
		}
		if last, ok := v.lastRenewOK(h); ok && h.Told {
			fmt.Fprintf(b, "; told %s after its lease began (last renew or create that succeeded)", h.End.Sub(last).Round(time.Millisecond))
		}
		if c := v.consulHolderOf(h); c != nil && h.Told {
			if call, ok := c.monitor.lastCall(); ok {
				fmt.Fprintf(b, "; %s", call.describe(rel))
			}
		}
		b.WriteString("\n")
	}
	if g.Len() > 0 {
		fmt.Fprintf(b, "  longest time with no holder: %s (%s → %s)\n", g.Len().Round(time.Millisecond), rel(g.From), rel(g.To))
	}
}

// firstGone is when the first read called after h acquired that saw the
// key no longer h's returned.
func firstGone(reads []observation, h holding) (time.Time, bool) {
	for _, r := range reads {
		if r.Call.After(h.Start) && !r.holds(h.Tenure) {
			return r.Return, true
		}
	}
	return time.Time{}, false
}

func (v *lockView) goHolderOf(h holding) *goHolder {
	for _, g := range v.gos {
		if g.spec.name == h.Key && g.name == h.Holder {
			return g
		}
	}
	return nil
}

func (v *lockView) consulHolderOf(h holding) *consulHolder {
	for _, c := range v.consuls {
		if c.spec.name == h.Key && c.name == h.Holder {
			return c
		}
	}
	return nil
}

// tapOf is the session tap of h's client (nil for raftkv lock).
func (v *lockView) tapOf(h holding) *sessionTap {
	if g := v.goHolderOf(h); g != nil {
		return g.tap
	}
	if c := v.consulHolderOf(h); c != nil {
		return c.tap
	}
	return nil
}

// lastRenewOK is when the create or the last renew of h's session that
// succeeded before h was told was sent (Go and consul/api holders): when
// the lease the client counted started (consul/api's Lock counts none:
// for it, when the lease it renews started).
func (v *lockView) lastRenewOK(h holding) (time.Time, bool) {
	tap := v.tapOf(h)
	if tap == nil {
		return time.Time{}, false
	}
	var last time.Time
	for _, r := range tap.leaseLog() {
		if r.Status == 200 && r.Done.Before(h.End) {
			last = r.Sent
		}
	}
	return last, !last.IsZero()
}

// checkFailover: the holder that can renew through the majority side must
// not lose its lock while its renewals succeed (the cluster must not
// invalidate a session renewed less than TTL ago, whatever its node).
func (v *lockView) checkFailover(b *strings.Builder, hs []holding, rel func(time.Time) string, bad func(string, ...any)) {
	for _, h := range hs {
		g := v.goHolderOf(h)
		if g == nil || !g.spec.failover || h.Holder != g.name || !strings.HasPrefix(g.name, "holder") {
			continue
		}
		ok := 0
		for _, r := range g.tap.renewLog() {
			if r.Status == 200 && r.Sent.After(v.cutAt) {
				ok++
			}
		}
		if !h.Told {
			fmt.Fprintf(b, "%s: the holder kept its lock through the partition (%d renews accepted while cut off)\n", h.Key, ok)
			continue
		}
		if why := lostWhileRenewing(h.End, g.tap.leaseLog(), v.ttl, rkclient.DefaultAttemptTimeout); why != "" {
			bad("%s: the holder renewing through the other nodes lost its lock at %s: %s", h.Key, rel(h.End), why)
		} else {
			fmt.Fprintf(b, "%s: the holder lost its lock at %s after its renewals failed (%d accepted while cut off)\n", h.Key, rel(h.End), ok)
		}
	}
}

// keep writes the node logs, raftkv lock's output and times, and the
// report to a new directory, and names it.
func (v *lockView) keep(report string) {
	dir, err := os.MkdirTemp("", "raftkv-lockview-"+strings.ReplaceAll(v.t.Name(), "/", "_")+"-")
	if err != nil {
		v.t.Error(err)
		return
	}
	for _, p := range v.c.Procs {
		if p.Log != nil {
			os.WriteFile(filepath.Join(dir, p.ID+".log"), []byte(p.Log.String()), 0o644)
		}
	}
	for _, h := range v.clis {
		for _, f := range []string{h.file, h.log} {
			if b, err := os.ReadFile(f); err == nil {
				os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644)
			}
		}
	}
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(report), 0o644)
	v.t.Errorf("node logs, raftkv lock output and the report in %s", dir)
}
