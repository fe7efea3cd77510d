package robustness

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Crash loops check the promise that every node restarts after any crash,
// repeated at any moment (all nodes at once, the leader right after it took
// writes, a majority), and that the cluster serves again. raft-wal v0.4.0
// broke it: a tail truncation (raft's "clearing log suffix", when a
// rejoining old leader drops entries the new leader never had) followed by a
// crash left a sealed segment without its index, and the node then panicked
// on every start ("sealed segment has no index block"). A single crash per
// run never crashes a node after such a truncation, so the loops crash
// again as soon as the cluster serves, or as soon as the truncation shows.
func crashLoops() []scenario {
	return []scenario{
		{name: "crash-loop/kill-all", fault: killAllLoop},
		{name: "crash-loop/leader-after-writes", fault: leaderAfterWritesLoop},
		{name: "crash-loop/majority", fault: majorityLoop},
	}
}

// truncationMark is what raft logs when a follower drops the tail of its
// log that the leader does not have; snapshotMark when it catches up by a
// snapshot instead (its log was too far behind), which drops the log too.
const (
	truncationMark = "clearing log suffix"
	snapshotMark   = "Installed remote snapshot"
	// caughtUpMark: it applied what the leader had committed when it
	// reached it, so it holds no entry the leader lacks any more.
	caughtUpMark = "caught up with the leader"
)

// crashLoop is a crash loop's environment and figures.
type crashLoop struct {
	*env
	crashes int   // processes killed
	logFrom []int // each node's log length when the loop began
	// leader-after-writes: old leaders that rejoined, and how
	rejoins, truncated, snapshots, adopted int
}

func newCrashLoop(e *env) *crashLoop {
	l := &crashLoop{env: e}
	for _, p := range e.c.Procs {
		l.logFrom = append(l.logFrom, len(p.Log.String()))
	}
	return l
}

// repeats is how many times a loop crashes: a few in CI, more in a soak.
func (l *crashLoop) repeats(ci int) int {
	if l.tm == soakTiming {
		return 4 * ci
	}
	return ci
}

// crash kills -9 the nodes listed at the same moment.
func (l *crashLoop) crash(idx ...int) {
	for _, i := range idx {
		l.serving.set(i, down)
	}
	l.c.KillAtOnce(idx...)
	l.crashes += len(idx)
}

func (l *crashLoop) restart(idx ...int) {
	for _, i := range idx {
		l.start(i)
	}
}

// traffic lets the clients run for a random time up to upTo, so that the
// next crash lands at a different moment of the cluster's work each time.
func (l *crashLoop) traffic(upTo time.Duration) {
	time.Sleep(time.Duration(l.rnd.Int64N(int64(upTo)))) // traffic time, not synchronisation
}

// waitServing waits until every running node completes a linearizable read
// (a leader is back and the node reaches it). A node that exits by itself
// meanwhile, such as one panicking at start, fails the test at once.
func (l *crashLoop) waitServing() {
	l.c.WaitFor(30*time.Second, "every node serving", func() error {
		for _, p := range l.c.Procs {
			if !p.Running() {
				continue
			}
			resp, err := l.c.Get(p.Addr, "/v1/kv/crash-loop/probe")
			if err != nil {
				return fmt.Errorf("%s: %v", p.ID, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 && resp.StatusCode != 404 {
				return fmt.Errorf("%s: status %d", p.ID, resp.StatusCode)
			}
		}
		return nil
	})
}

// report logs the loop's figures (the run logs its operations and unknown
// outcomes after the checks).
func (l *crashLoop) report() {
	truncations := 0
	for i, p := range l.c.Procs {
		from := 0
		if i < len(l.logFrom) {
			from = l.logFrom[i]
		}
		truncations += strings.Count(p.Log.String()[from:], truncationMark)
	}
	s := fmt.Sprintf("%d crashes, %d log-suffix truncations in the node logs", l.crashes, truncations)
	if l.rejoins > 0 {
		s += fmt.Sprintf("; old leaders rejoined %d times: %d by truncating their log, %d by a snapshot, %d with their tail taken by the others", l.rejoins, l.truncated, l.snapshots, l.adopted)
	}
	l.t.Logf("crash loop: %s", s)
}

func (l *crashLoop) all() []int {
	var out []int
	for i, p := range l.c.Procs {
		if p.Running() {
			out = append(out, i)
		}
	}
	return out
}

// killAllLoop crashes every node at once, restarts them all and, once a
// leader is back and every node serves, does it again. A leader holding
// entries it had not replicated when it crashed often loses the next
// election and then truncates them when it rejoins.
func killAllLoop(e *env) {
	l := newCrashLoop(e)
	defer l.report()
	nodes := l.all()
	for range l.repeats(12) {
		l.crash(nodes...)
		l.restart(nodes...)
		l.waitServing()
		l.traffic(300 * time.Millisecond)
	}
}

// majorityLoop crashes two of the three nodes at once, the leader among
// them every other time. The survivor cannot reach a majority: it must
// answer its clients quickly (503 or 504) until the others are back.
func majorityLoop(e *env) {
	l := newCrashLoop(e)
	defer l.report()
	for n := range l.repeats(12) {
		leader := l.leader()
		survivor := l.others(leader)[l.rnd.IntN(2)] // the leader crashes
		if n%2 == 1 {
			survivor = leader // the followers crash
		}
		victims := l.others(survivor)
		l.serving.set(survivor, cutOff)
		l.crash(victims...)
		l.traffic(time.Second) // the survivor alone
		l.restart(victims...)
		l.serving.set(survivor, serving)
		l.waitServing()
	}
}

// leaderAfterWritesLoop crashes the leader while it holds entries no other
// node has, restarts it once another leader is elected (so that it rejoins
// as a follower and must drop them), and crashes it again as soon as it
// has: a crash right after a tail truncation, the moment that left raft-wal
// v0.4.0's log unreadable. It goes on until that moment came often enough.
func leaderAfterWritesLoop(e *env) {
	l := newCrashLoop(e)
	defer l.report()
	want := l.repeats(4)
	for l.truncated < want && l.rejoins < 3*want {
		old := l.leader()
		l.crashWithTail(old)
		// Healed at once: the new leader's attempts to reach the dead node
		// then fail fast (cut, its refusals were lost, and TCP waits a
		// second to retry), so it reaches it as soon as it is back, before
		// it compacts the entries where their logs part.
		l.heal()
		l.waitNewLeader(old)
		from := len(l.c.Procs[old].Log.String())
		l.restart(old)
		l.waitRejoin(old, from)
		l.crash(old)
		l.restart(old)
		l.waitServing()
	}
	if l.truncated == 0 {
		l.t.Errorf("no old leader truncated its log in %d rejoins: the loop never crashed one right after a truncation", l.rejoins)
	}
}

// crashWithTail cuts the packets the leader sends to the others, sends it
// a burst of writes, waits until it has appended them, and kills it: the
// entries it appended after the cut never left it. (The clients' own
// writes cannot be relied on for that: each waits for its last one, which
// the leader took before the cut, until the leader steps down.) From the
// cut the leader is down as far as availability goes: it has nobody to
// commit with, and the calls it is answering end in the crash that follows
// (one-way/leader-out checks a cut-off leader's answers).
func (l *crashLoop) crashWithTail(leader int) {
	l.serving.set(leader, down)
	var pairs [][2]int
	for _, j := range l.others(leader) {
		pairs = append(pairs, [2]int{leader, j})
	}
	l.cut(pairs...)
	var atCut uint64
	l.c.WaitFor(10*time.Second, "the cut-off leader's last index", func() (err error) {
		atCut, err = l.lastIndex(leader)
		return err
	})
	burst := l.writeBurst(leader)
	l.c.WaitFor(10*time.Second, "the cut-off leader to append entries", func() error {
		last, err := l.lastIndex(leader)
		if err == nil && last <= atCut {
			err = fmt.Errorf("last index %d, %d at the cut", last, atCut)
		}
		return err
	})
	l.crash(leader)
	burst()
}

// writeBurst sends node i a few writes, of keys the checked history does
// not have, without waiting for their answers; the returned function waits
// for the calls to end.
func (l *crashLoop) writeBurst(i int) (wait func()) {
	hc := l.c.HTTPClient(clientTimeout)
	var wg sync.WaitGroup
	for n := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := l.c.URL(l.c.Procs[i].Addr, fmt.Sprintf("/v1/kv/crash-loop/tail-%d", n))
			req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader("x"))
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	return func() {
		wg.Wait()
		hc.CloseIdleConnections()
	}
}

// waitNewLeader waits until the running nodes elected a leader other than
// old (which is down): restarted before that, old, whose log is the
// longest, could win the election again and keep its tail.
func (l *crashLoop) waitNewLeader(old int) {
	l.c.WaitFor(20*time.Second, "a new leader", func() error {
		if n := l.c.Leader(); n < 0 || n == old {
			return fmt.Errorf("leader %d", n)
		}
		return nil
	})
}

// waitRejoin waits until the restarted old leader no longer holds entries
// the new leader lacks, and tells from its log past from how they went: it
// truncated its log to the new leader's, or, the new leader having
// compacted the entries where their logs part, installed its snapshot, or
// neither before it caught up: the others took its tail after all (a
// killed process's kernel goes on sending what its sockets held, and the
// network healed before the others elected a new leader).
func (l *crashLoop) waitRejoin(old, from int) {
	p := l.c.Procs[old]
	l.c.WaitFor(20*time.Second, p.ID+" to catch up with the new leader", func() error {
		log := p.Log.String()[from:]
		switch {
		case strings.Contains(log, truncationMark):
			l.truncated++
		case strings.Contains(log, snapshotMark):
			l.snapshots++
		case strings.Contains(log, caughtUpMark):
			l.adopted++
		default:
			return fmt.Errorf("not yet")
		}
		return nil
	})
	l.rejoins++
}

// lastIndex reads the index of the last entry in node i's raft log from
// its metrics.
func (l *crashLoop) lastIndex(i int) (uint64, error) {
	resp, err := l.c.Get(l.c.Procs[i].Addr, "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "raftkv_raft_last_log_index "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return uint64(f), err
		}
	}
	return 0, fmt.Errorf("%s: no raftkv_raft_last_log_index in its metrics (%v)", l.c.Procs[i].ID, sc.Err())
}
