//go:build linux

package patroni

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

func TestMain(m *testing.M) {
	if err := becomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER):", err)
		os.Exit(1)
	}
	go reapLoop()
	code := m.Run()
	proccluster.Cleanup()
	os.Exit(code)
}

// buildOpts: race-checked raftkvd by default, as in tests/e2e;
// RAFTKV_E2E_RACE=0 builds a plain one.
func buildOpts() proccluster.BuildOptions {
	return proccluster.BuildOptions{Race: os.Getenv("RAFTKV_E2E_RACE") != "0"}
}

var (
	// What Patroni logs when it demotes a primary: "Demoting self (…)",
	// "demoting self because DCS is not accessible and I was a leader",
	// "demoted self because failed to update leader lock in DCS", …
	demotionRE = regexp.MustCompile(`(?i)demot`)
	// What it logs when the DCS gives it trouble, for the report.
	dcsTroubleRE = regexp.MustCompile(`(?i)demot|not accessible|communicating with DCS|leader lock|Consul|Retry|timed out|timeout|refused|No cluster leader|ERROR`)
	// PostgreSQL's own lines in the same log, and Python's traceback
	// frames: left out of the DCS report (the exception's line stays).
	notPatroniRE = regexp.MustCompile(`^\s|UTC \[\d+\]|^Traceback`)
)

// dcsLines is what Patroni logged in s about the DCS and demotions.
func dcsLines(s string) []string {
	var out []string
	for _, l := range grepLines(s, dcsTroubleRE) {
		if !notPatroniRE.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestPatroniOnRaftkv runs a three-member Patroni cluster on a three-node
// raftkv cluster through bootstrap, a switchover, a failover, the raft
// leader's crash and a 3 s loss of quorum; see the package doc.
func TestPatroniOnRaftkv(t *testing.T) {
	tl := findTools(t)
	began := time.Now()
	rk := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: buildOpts()})
	rk.FailOnExit()
	c := newPGCluster(t, tl, rk, 3)
	checker := startChecker(c)
	defer func() {
		problems, polls := checker.stop()
		for _, p := range problems {
			t.Error(p)
		}
		t.Logf("split-brain checker: %d polls of every member's GET /patroni, %d overlaps of two primaries", polls, len(problems))
		t.Logf("role changes seen by the checker:\n%s", checker.roles(began))
		t.Logf("whole test: %s", time.Since(began).Round(100*time.Millisecond))
	}()
	var summary []string
	note := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		summary = append(summary, s)
		t.Log(s)
	}
	defer func() { t.Logf("summary:\n  %s", strings.Join(summary, "\n  ")) }()

	phase := func(name string) {
		t.Logf("=== %s (%s into the test)", name, time.Since(began).Round(100*time.Millisecond))
		for _, m := range c.members {
			c.appendLog(m, "=== test: phase %s %s\n", name, time.Now().Format(time.RFC3339Nano))
		}
	}

	// Bootstrap: the three members race for the DCS's initialize key; the
	// winner runs initdb and takes the leader key, the others clone it with
	// pg_basebackup and stream from it.
	phase("bootstrap")
	t0 := time.Now()
	for _, m := range c.members {
		c.start(m)
	}
	p := c.healthy(150 * time.Second)
	note("bootstrap: %s primary (DCS: raftkv %s), two streaming replicas, %s after the Patroni processes started",
		p.name, rk.Procs[p.node].ID, time.Since(t0).Round(100*time.Millisecond))
	if _, err := c.psql(p, "CREATE TABLE writes (id bigserial PRIMARY KEY, tag text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"); err != nil {
		t.Fatal(err)
	}
	c.replicated(p, "bootstrap")
	if v := c.rkGet(0, "service/"+c.scope+"/leader"); v != p.name {
		t.Fatalf("the leader key in raftkv holds %q, want %s", v, p.name)
	}
	t.Logf("Patroni's keys in raftkv: %s", c.rkGet(0, "service/"+c.scope+"/?keys"))

	// Switchover through Patroni's REST API, to a named candidate.
	phase("switchover")
	p = c.healthy(60 * time.Second)
	cand := c.members[(indexOf(c.members, p)+1)%len(c.members)]
	before := c.mustStatus(p)
	t0 = time.Now()
	// Patroni answers once the leader key has moved (it checks every second);
	// meanwhile, try writes on the candidate.
	answer := make(chan string, 1)
	go func() {
		code, body, err := c.post(p, "/switchover", fmt.Sprintf(`{"leader":%q,"candidate":%q}`, p.name, cand.name))
		if err == nil && (code != 200 || !strings.Contains(body, "Successfully switched over")) {
			err = fmt.Errorf("%d %s", code, body)
		}
		if err != nil {
			answer <- fmt.Sprintf("POST /switchover on %s: %v", p.name, err)
			return
		}
		answer <- ""
	}()
	testsupport.WaitFor(t, 60*time.Second, cand.name+" a primary taking writes", func() error {
		return c.insert(cand, "switchover")
	})
	took := time.Since(t0)
	if err := <-answer; err != "" {
		t.Fatal(err)
	}
	answered := time.Since(t0)
	if np := c.healthy(90 * time.Second); np != cand {
		t.Fatalf("after the switchover %s is the primary, want %s", np.name, cand.name)
	}
	after := c.mustStatus(cand)
	if after.Timeline <= before.Timeline {
		t.Errorf("the new primary's timeline is %d, was %d before the switchover", after.Timeline, before.Timeline)
	}
	note("switchover %s → %s: %s took writes %s after the request (REST answered after %s), %s back as a streaming replica %s after it (timeline %d → %d)",
		p.name, cand.name, cand.name, took.Round(100*time.Millisecond), answered.Round(100*time.Millisecond),
		p.name, time.Since(t0).Round(100*time.Millisecond), before.Timeline, after.Timeline)
	c.replicated(cand, "switchover")

	// Failover: the primary's machine crashes (Patroni and PostgreSQL,
	// kill -9). Its session is never destroyed: its leader key goes when
	// the DCS invalidates the session, at most 2 x its TTL (ttl/2) after the
	// last renew, i.e. within ttl; then a replica takes it and promotes.
	phase("failover")
	p = c.healthy(60 * time.Second)
	before = c.mustStatus(p)
	t0 = time.Now()
	c.kill(p)
	var np *member
	testsupport.WaitFor(t, ttl+30*time.Second, "a replica promoted and taking writes after "+p.name+" was killed", func() error {
		for _, m := range c.members {
			if m == p {
				continue
			}
			if s, err := c.status(m); err == nil && s.primary() {
				if err := c.insert(m, "failover"); err != nil {
					return err
				}
				np = m
				return nil
			}
		}
		return fmt.Errorf("no primary yet")
	})
	failover := time.Since(t0)
	if failover > ttl+10*time.Second {
		t.Errorf("failover took %s, more than ttl (%s) + 10 s", failover, ttl)
	}
	t1 := time.Now()
	rewindMark := logSize(p)
	c.start(p)
	if got := c.healthy(120 * time.Second); got != np {
		t.Fatalf("after the restart of %s the primary is %s, want %s", p.name, got.name, np.name)
	}
	rejoin := time.Since(t1)
	c.replicated(np, "after-failover")
	how := "without pg_rewind"
	if rw := grepLines(logSince(p, rewindMark), regexp.MustCompile(`(?i)rewind|removing data directory|basebackup`)); len(rw) > 0 {
		how = "log: " + strings.Join(trimAll(rw, 3), " | ")
	}
	note("failover after kill -9 of %s (primary, timeline %d): %s promoted and taking writes %s after the kill (ttl %s); %s restarted and streaming from it %s later (%s)",
		p.name, before.Timeline, np.name, failover.Round(100*time.Millisecond), ttl, p.name, rejoin.Round(100*time.Millisecond), how)

	// The raft leader crashes: kill -9 of the raftkv leader, which is not the
	// node the primary's Patroni talks to (leadership is moved away from that
	// one first). Patroni's node holds its requests through the election.
	phase("raft leader killed")
	p = c.healthy(60 * time.Second)
	leader := rk.WaitLeader(15 * time.Second)
	if leader == p.node {
		to := (p.node + 1) % len(rk.Procs)
		c.transferLeader(to)
		leader = to
	}
	res := c.faultWithoutDemotion(p, "raft leader "+rk.Procs[leader].ID+" killed", func() (time.Time, time.Time) {
		start := time.Now()
		rk.Kill(leader)
		testsupport.WaitFor(t, 20*time.Second, "a new raft leader", func() error {
			if l := rk.Leader(); l < 0 || l == leader {
				return fmt.Errorf("the nodes know no new leader yet")
			}
			return nil
		})
		return start, time.Now()
	})
	t0 = time.Now()
	rk.StartProc(leader)
	rk.WaitReady(30 * time.Second)
	note("raft leader %s killed (%s primary, DCS %s): a new raft leader known %s after the kill; longest gap between raftkv writes through %s %s; PostgreSQL write gap %s; Patroni's DCS outage %s; demoted: %v; %s restarted and ready in %s",
		rk.Procs[leader].ID, p.name, rk.Procs[p.node].ID, res.faultTook.Round(10*time.Millisecond), rk.Procs[p.node].ID,
		res.rkGap.Round(10*time.Millisecond), res.pgGap.Round(10*time.Millisecond), res.dcsOutage, res.demoted,
		rk.Procs[leader].ID, time.Since(t0).Round(100*time.Millisecond))

	// A 3 s loss of quorum: the two raftkv nodes the primary's Patroni does
	// not talk to are frozen (SIGSTOP), then thawed (SIGCONT). Its node has
	// no leader meanwhile and holds its requests; the primary must ride it
	// out (retry_timeout is 9 s), not demote itself. Twice: with the raft
	// leader among the frozen nodes (the primary's node is a follower that
	// loses its leader), and on the primary's node (a leader that loses its
	// quorum and steps down).
	for _, leaderFrozen := range []bool{true, false} {
		where := "the raft leader frozen"
		if !leaderFrozen {
			where = "the raft leader on the primary's node"
		}
		phase("quorum loss, " + where)
		p = c.healthy(60 * time.Second)
		var frozen []int
		for i := range rk.Procs {
			if i != p.node {
				frozen = append(frozen, i)
			}
		}
		if leaderFrozen {
			if rk.WaitLeader(15*time.Second) == p.node {
				c.transferLeader(frozen[0])
			}
		} else {
			c.transferLeader(p.node)
		}
		const freeze = 3 * time.Second
		wasLeader := rk.WaitLeader(15 * time.Second)
		res = c.faultWithoutDemotion(p, fmt.Sprintf("%s and %s frozen for %s", rk.Procs[frozen[0]].ID, rk.Procs[frozen[1]].ID, freeze), func() (time.Time, time.Time) {
			start := time.Now()
			for _, i := range frozen {
				rk.Pause(i)
			}
			timer := time.NewTimer(freeze) // the fault itself: how long quorum is lost
			<-timer.C
			end := time.Now()
			for _, i := range frozen {
				rk.Resume(i)
			}
			return start, end
		})
		note("quorum loss (%s and %s SIGSTOPped for %s, raft leader before: %s; %s primary, DCS %s): raftkv writes through %s back %s after SIGCONT (longest gap %s); PostgreSQL write gap %s; Patroni's DCS outage %s; demoted: %v",
			rk.Procs[frozen[0]].ID, rk.Procs[frozen[1]].ID, res.faultTook.Round(10*time.Millisecond), rk.Procs[wasLeader].ID, p.name, rk.Procs[p.node].ID,
			rk.Procs[p.node].ID, res.rkBack.Round(10*time.Millisecond), res.rkGap.Round(10*time.Millisecond), res.pgGap.Round(10*time.Millisecond), res.dcsOutage, res.demoted)
		rk.WaitReady(30 * time.Second)
	}
	rk.WaitReady(30 * time.Second)
	c.healthy(90 * time.Second)
}

// faultResult is what faultWithoutDemotion measured.
type faultResult struct {
	faultTook time.Duration // from the fault's start to its end (or recovery)
	rkBack    time.Duration // from the fault's end to the first write through the primary's raftkv node
	rkGap     time.Duration // the longest time without a successful write through that node
	pgGap     time.Duration // the longest time without a successful INSERT on the primary
	dcsOutage string        // how long Patroni's dcs_last_seen stood still
	demoted   bool
}

// faultWithoutDemotion runs fault (which returns when it started and when
// it ended) under the primary p and checks that p rode it out: Patroni did
// not demote it (its log, its role and timeline through the checker and
// before/after, its postmaster's PID and start time), PostgreSQL took
// writes again within a few seconds of the fault's end, and no other
// member was promoted. It returns once Patroni has worked with the DCS
// again after the fault, so that a late demotion would have been seen.
func (c *pgCluster) faultWithoutDemotion(p *member, what string, fault func() (start, end time.Time)) faultResult {
	t := c.t
	t.Helper()
	before := c.mustStatus(p)
	pm := postmasterPID(p.dataDir)
	marks := map[*member]int64{}
	for _, m := range c.members {
		marks[m] = logSize(m)
	}
	pg := startWriter(100*time.Millisecond, func(i int) error { return c.insert(p, fmt.Sprintf("fault-%d", i)) })
	defer pg.stop()
	rkc := &http.Client{Timeout: 15 * time.Second}
	rkw := startWriter(100*time.Millisecond, func(int) error { return c.rkPut(rkc, p.node, "raftkv-patroni-test/probe") })
	defer rkw.stop()
	// dcs_last_seen (whole seconds) as Patroni reports it, when it changes.
	var seenMu sync.Mutex
	var seen []int64
	sampler := startWriter(200*time.Millisecond, func(int) error {
		s, err := c.status(p)
		if err != nil {
			return err
		}
		seenMu.Lock()
		defer seenMu.Unlock()
		if len(seen) == 0 || seen[len(seen)-1] != s.DCSLastSeen {
			seen = append(seen, s.DCSLastSeen)
		}
		return nil
	})
	defer sampler.stop()
	warm := time.Now()
	testsupport.WaitFor(t, 20*time.Second, "writes through "+p.name+" and its raftkv node before the fault", func() error {
		_, ok1 := pg.firstOKAfter(warm)
		_, ok2 := rkw.firstOKAfter(warm)
		if !ok1 || !ok2 {
			return fmt.Errorf("not yet (PostgreSQL %v, raftkv %v)", ok1, ok2)
		}
		return nil
	})

	start, end := fault()
	t.Logf("fault: %s, from %s to %s", what, stamp(start), stamp(end))

	// Wait until Patroni has had a whole successful exchange with the DCS
	// that began after the fault ended (dcs_last_seen counts whole seconds),
	// and raftkv and PostgreSQL take writes again; then a demotion caused by
	// the fault would have happened.
	recovered := int64(math.Ceil(float64(end.UnixNano())/1e9)) + 1
	err := testsupport.Poll(retryTimeout+ttl, func() error {
		s, err := c.status(p)
		if err != nil {
			return err
		}
		if s.DCSLastSeen < recovered {
			return fmt.Errorf("Patroni on %s last saw the DCS at %d, want ≥ %d", p.name, s.DCSLastSeen, recovered)
		}
		if _, ok := rkw.firstOKAfter(end); !ok {
			return fmt.Errorf("no write through raftkv %s since the fault ended", c.rk.Procs[p.node].ID)
		}
		if _, ok := pg.firstOKAfter(end); !ok {
			return fmt.Errorf("no INSERT on %s since the fault ended", p.name)
		}
		return nil
	})
	done := time.Now()
	pg.stop()
	rkw.stop()
	sampler.stop()
	if err != nil {
		t.Errorf("%s: Patroni, raftkv or PostgreSQL did not recover within %s: %v", what, retryTimeout+ttl, err)
	}

	var r faultResult
	r.faultTook = end.Sub(start)
	if at, ok := rkw.firstOKAfter(end); ok {
		r.rkBack = at.Sub(end)
	}
	r.rkGap = rkw.maxGap(start, done)
	r.pgGap = pg.maxGap(start, done)
	r.dcsOutage = dcsOutage(seen)

	// The evidence of a demotion.
	var evidence []string
	logs := logSince(p, marks[p])
	if lines := grepLines(logs, demotionRE); len(lines) > 0 {
		evidence = append(evidence, "Patroni on "+p.name+" logged:\n    "+strings.Join(lines, "\n    "))
	}
	after, err := c.status(p)
	switch {
	case err != nil:
		evidence = append(evidence, fmt.Sprintf("GET /patroni on %s after the fault: %v", p.name, err))
	case !after.primary():
		evidence = append(evidence, fmt.Sprintf("%s is %s/%s after the fault", p.name, after.Role, after.State))
	case after.Timeline != before.Timeline || after.PostmasterStartTime != before.PostmasterStartTime:
		evidence = append(evidence, fmt.Sprintf("%s: timeline %d → %d, postmaster started %s → %s", p.name,
			before.Timeline, after.Timeline, before.PostmasterStartTime, after.PostmasterStartTime))
	}
	if now := postmasterPID(p.dataDir); now != pm {
		evidence = append(evidence, fmt.Sprintf("%s's postmaster PID %d → %d", p.name, pm, now))
	}
	if roles := c.checkerRoles(p, start); roles != "" {
		evidence = append(evidence, roles)
	}
	for _, m := range c.members {
		if m == p {
			continue
		}
		if lines := grepLines(logSince(m, marks[m]), regexp.MustCompile(`(?i)promot`)); len(lines) > 0 {
			evidence = append(evidence, m.name+" logged:\n    "+strings.Join(lines, "\n    "))
		}
	}
	if len(evidence) > 0 {
		r.demoted = true
		ok, failed, errs := pg.counts()
		evidence = append(evidence, fmt.Sprintf("INSERTs on %s during the fault and after: %d ok, %d failed (last: %s)", p.name, ok, failed, strings.Join(errs, "; ")))
		t.Errorf("%s: the primary %s was demoted (or disturbed):\n  %s\nwhat Patroni on %s logged about the DCS meanwhile:\n    %s",
			what, p.name, strings.Join(evidence, "\n  "), p.name, strings.Join(trimAll(dcsLines(logs), 60), "\n    "))
	} else if lines := dcsLines(logs); len(lines) > 0 {
		t.Logf("%s: Patroni on %s logged (no demotion):\n    %s", what, p.name, strings.Join(trimAll(lines, 20), "\n    "))
	}
	if back, ok := pg.firstOKAfter(end); !ok || back.Sub(end) > 5*time.Second {
		ok, failed, errs := pg.counts()
		t.Errorf("%s: INSERTs on %s did not resume within 5 s of the fault's end (%d ok, %d failed; last errors: %s)",
			what, p.name, ok, failed, strings.Join(errs, "; "))
	}
	return r
}

// checkerRoles describes p's role changes the checker saw since since,
// if p was ever anything but a running primary.
func (c *pgCluster) checkerRoles(p *member, since time.Time) string {
	k := c.checker
	k.mu.Lock()
	defer k.mu.Unlock()
	var seen []string
	for _, rc := range k.history[p.name] {
		if !rc.at.Before(since) && rc.role != "master/running" && rc.role != "primary/running" {
			seen = append(seen, stamp(rc.at)+" "+rc.role)
		}
	}
	if len(seen) == 0 {
		return ""
	}
	return "the checker saw " + p.name + " as: " + strings.Join(seen, ", ")
}

// dcsOutage describes the longest stand-still of dcs_last_seen.
func dcsOutage(seen []int64) string {
	var gap int64
	for i := 1; i < len(seen); i++ {
		gap = max(gap, seen[i]-seen[i-1])
	}
	if len(seen) < 2 {
		return "unknown"
	}
	return fmt.Sprintf("≤ %d s between successful HA cycles (loop_wait %s)", gap, loopWait)
}

func (c *pgCluster) mustStatus(m *member) status {
	c.t.Helper()
	s, err := c.status(m)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// replicated writes a row tagged tag through the primary p and waits until
// every other member's PostgreSQL has it.
func (c *pgCluster) replicated(p *member, tag string) {
	c.t.Helper()
	if err := c.insert(p, tag+"-check"); err != nil {
		c.t.Fatal(err)
	}
	for _, m := range c.members {
		if m == p {
			continue
		}
		testsupport.WaitFor(c.t, 30*time.Second, "row "+tag+"-check on "+m.name, func() error {
			out, err := c.psql(m, "SELECT count(*) FROM writes WHERE tag = '"+tag+"-check'")
			if err != nil {
				return err
			}
			if out != "1" {
				return fmt.Errorf("%s has %s rows", m.name, out)
			}
			return nil
		})
	}
}

// post sends a POST to member m's REST API (a switchover waits for the
// outcome: up to 2 x max(10 s, loop_wait)).
func (c *pgCluster) post(m *member, path, body string) (int, string, error) {
	hc := &http.Client{Timeout: 60 * time.Second}
	resp, err := hc.Post("http://127.0.0.1:"+strconv.Itoa(m.apiPort)+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}

// rkGet reads a key (raw) through raftkv node i.
func (c *pgCluster) rkGet(i int, key string) string {
	c.t.Helper()
	sep := "?raw"
	if strings.Contains(key, "?") {
		sep = ""
	}
	resp, err := c.rk.Get(c.rk.Procs[i].Addr, "/v1/kv/"+key+sep)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// transferLeader moves raft leadership to node to.
func (c *pgCluster) transferLeader(to int) {
	c.t.Helper()
	testsupport.WaitFor(c.t, 20*time.Second, "raft leadership on "+c.rk.Procs[to].ID, func() error {
		if l := c.rk.Leader(); l == to {
			return nil
		} else if l >= 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.rk.URL(c.rk.Procs[l].Addr, "/v1/operator/raft/transfer-leader?id="+c.rk.Procs[to].ID), nil)
			if resp, err := c.rk.HTTPClient(5 * time.Second).Do(req); err == nil {
				resp.Body.Close()
			}
		}
		return fmt.Errorf("leader is not %s yet", c.rk.Procs[to].ID)
	})
}

func indexOf(ms []*member, m *member) int {
	for i, x := range ms {
		if x == m {
			return i
		}
	}
	return -1
}

// trimAll keeps the last n lines.
func trimAll(lines []string, n int) []string {
	if len(lines) > n {
		return append([]string{fmt.Sprintf("(%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return lines
}
