package robustness

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
	"github.com/raftkv/raftkv/kv"
)

// env is what a fault works with.
type env struct {
	t       *testing.T
	c       *proccluster.Cluster
	rnd     *rand.Rand
	tm      timing
	serving *servingLog // which nodes are expected to serve, over time
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

func (e *env) others(i int) []int {
	var out []int
	for j := range e.c.Procs {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// cut drops the packets each pair's first node sends to its second: real
// packet loss when the cluster runs in network namespaces. Without them the
// failpoint build stands in: a node refuses to dial (and closes its
// connections to) the peers it must not reach, so a one-way pair also cuts
// the connections that node opened, which is how TCP sees a one-way loss.
func (e *env) cut(pairs ...[2]int) {
	if e.c.Net != nil {
		e.c.Cut(pairs...)
		return
	}
	blocked := map[int][]string{}
	for _, p := range pairs {
		blocked[p[0]] = append(blocked[p[0]], e.c.Procs[p[1]].Addr)
	}
	for i, p := range e.c.Procs {
		if p.Running() {
			e.putBlocked(p.Addr, strings.Join(blocked[i], ","))
		}
	}
}

// partition cuts each listed pair in both directions.
func (e *env) partition(pairs ...[2]int) {
	var both [][2]int
	for _, p := range pairs {
		both = append(both, p, [2]int{p[1], p[0]})
	}
	e.cut(both...)
}

// isolate cuts node i off from every other node (clients still reach it).
func (e *env) isolate(i int) {
	var pairs [][2]int
	for _, j := range e.others(i) {
		pairs = append(pairs, [2]int{i, j})
	}
	e.partition(pairs...)
}

func (e *env) heal() {
	e.cut()
	for i, p := range e.c.Procs {
		if p.Running() {
			e.serving.set(i, serving)
		}
	}
}

func (e *env) kill(i int)  { e.serving.set(i, down); e.c.Kill(i) }
func (e *env) start(i int) { e.c.StartProc(i); e.serving.set(i, serving) }

// putBlocked sets a node's blocked peers, waiting for a node that was just
// restarted to listen.
func (e *env) putBlocked(addr, list string) {
	testsupport.WaitFor(e.t, 20*time.Second, "failpoint on "+addr, func() error {
		req, _ := http.NewRequest(http.MethodPut, e.c.URL(addr, "/debug/failpoints/blocked"), strings.NewReader(list))
		resp, err := e.c.HTTPClient(5 * time.Second).Do(req)
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
	req, _ := http.NewRequest(method, e.c.URL(l.Addr, path), nil)
	resp, err := e.c.HTTPClient(30 * time.Second).Do(req)
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
	testsupport.WaitFor(e.t, timeout, fmt.Sprintf("%q in %s's log", s, e.c.Procs[i].ID), func() error {
		if !strings.Contains(e.c.Procs[i].Log.String()[offset:], s) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

// placement says which nodes the six clients talk to, given the leader when
// traffic starts: every node in turn by default.
type placement func(leader, nodes int) []int

func everyNode(_, nodes int) []int { return []int{0, 1, 2, 0, 1, 2}[:6] }

func followersOnly(leader, nodes int) []int {
	var out []int
	for len(out) < 6 {
		for i := range nodes {
			if i != leader && len(out) < 6 {
				out = append(out, i)
			}
		}
	}
	return out
}

func leaderOnly(leader, _ int) []int { return []int{leader, leader, leader, leader, leader, leader} }

type scenario struct {
	name    string
	clients placement // nil: everyNode
	fault   func(e *env)
	// sessionsMayEnd: the fault may legitimately end a session that was
	// renewed less than TTL ago (its node removed from the cluster).
	sessionsMayEnd bool
	// abandonSession: a lock client stops renewing its session when the
	// fault starts, leaving the cluster to expire it by TTL under load.
	abandonSession bool
	// tls: the nodes speak only TLS (mutual between them), clients too.
	tls bool
	// acls: ACLs on (default deny); clients carry a non-management token,
	// and an intruder with a read-only token tries to write throughout.
	acls bool
	// shortTTL: the lock clients' sessions have 1s TTLs (shortLockTTL).
	shortTTL bool
	// ranges: the keyspace is cut in three ranges before the fault (lock
	// keys and traffic keys on every side).
	ranges bool
}

func faults() []scenario {
	return append([]scenario{
		{name: "kill-leader", fault: func(e *env) { l := e.leader(); e.kill(l); e.hold(); e.start(l) }},
		{name: "kill-follower", fault: func(e *env) { f := e.follower(); e.kill(f); e.hold(); e.start(f) }},
		{name: "kill-all", fault: func(e *env) {
			for i := range e.c.Procs {
				e.kill(i)
			}
			for i := range e.c.Procs {
				e.start(i)
			}
		}},
		{name: "pause-leader", fault: func(e *env) {
			l := e.leader()
			e.serving.set(l, down)
			e.c.Pause(l)
			e.hold()
			e.c.Resume(l)
			e.serving.set(l, serving)
		}},
		{name: "partition-leader", fault: isolateLeader},
		{name: "partition-leader/majority-clients", clients: followersOnly, fault: isolateLeader},
		{name: "partition-leader/tls+acls", tls: true, acls: true, fault: isolateLeader},
		{name: "kill-leader/acls", acls: true, fault: func(e *env) { l := e.leader(); e.kill(l); e.hold(); e.start(l) }},
		{name: "partition-leader/leader-clients", clients: leaderOnly, fault: isolateLeader},
		{name: "one-way/leader-out", fault: func(e *env) { cutLeaderOneWay(e, true) }},
		{name: "one-way/leader-in", fault: func(e *env) { cutLeaderOneWay(e, false) }},
		{name: "flapping", fault: func(e *env) {
			// The current leader is cut off and let back every 1–3 s.
			end := time.Now().Add(2 * e.tm.hold)
			for time.Now().Before(end) {
				l := e.c.Leader()
				if l >= 0 {
					e.serving.set(l, cutOff)
					e.isolate(l)
				}
				time.Sleep(time.Second + time.Duration(e.rnd.Int64N(int64(2*time.Second))))
				e.heal()
				time.Sleep(time.Second + time.Duration(e.rnd.Int64N(int64(2*time.Second))))
			}
		}},
		{name: "isolate-follower-past-node-failure", fault: func(e *env) {
			// Long enough for the leader to declare the node failed: the
			// sessions on it are invalidated and their locks move.
			f := e.follower()
			e.serving.set(f, cutOff)
			e.isolate(f)
			time.Sleep(max(e.tm.hold, kv.NodeFailAfter+4*time.Second)) // the fault's duration
		}},
		{name: "ttl-expiry-under-load", abandonSession: true, fault: func(e *env) {
			time.Sleep(kv.SessionTTLMultiplier*lockTTL + 3*time.Second) // the fault's duration
		}},
		// Sessions with 1s TTLs (Traefik's), renewed every 200ms: the leader
		// cut off, and a session left to expire under load.
		{name: "partition-leader/ttl-1s", shortTTL: true, fault: isolateLeader},
		{name: "ttl-expiry-under-load/ttl-1s", shortTTL: true, abandonSession: true, fault: func(e *env) {
			time.Sleep(kv.SessionTTLMultiplier*shortLockTTL + 3*time.Second) // the fault's duration
		}},
		{name: "bridge", fault: func(e *env) {
			l, f := e.leader(), e.follower()
			// The third node sees both; f reaches no leader, so it is not
			// expected to serve until the network heals, only to answer.
			e.serving.set(f, cutOff)
			e.partition([2]int{l, f})
			e.hold()
			e.heal()
		}},
		{name: "snapshot-install", fault: installSnapshot},
		{name: "member-replace", sessionsMayEnd: true, fault: func(e *env) { replaceMember(e) }},
		// Ranges: the keyspace cut in three during traffic (lock keys on
		// both sides of the first cut, reads and writes on every range),
		// with a leader change and a leader killed between the cuts.
		{name: "splits", fault: func(e *env) {
			e.operator(http.MethodPost, "/v1/operator/range/split?key="+watchSplit)
			e.operator(http.MethodPost, "/v1/operator/range/split?key=lock/r3/")
			e.hold()
			e.operator(http.MethodPost, "/v1/operator/raft/transfer-leader")
			e.operator(http.MethodPost, "/v1/operator/range/split?key=r5/")
			l := e.leader()
			e.kill(l)
			e.hold()
			e.start(l)
		}},
		{name: "splits/during-faults", ranges: true, fault: splitsDuringFaults},
		{name: "partition-leader/ranges", ranges: true, fault: isolateLeader},
		// Membership after splits: the replaced node leaves every range,
		// the fresh one joins every range (from snapshots), the isolated
		// one catches every range up.
		{name: "member-replace/ranges", ranges: true, sessionsMayEnd: true, fault: replaceMemberOfEveryRange},
		{name: "snapshot-install/ranges", ranges: true, fault: installSnapshot},

		{name: "crash-loop/kill-all/ranges", ranges: true, fault: killAllLoop},
		{name: "leadership-transfers", fault: func(e *env) {
			for range 5 {
				before := e.leader()
				e.operator(http.MethodPost, "/v1/operator/raft/transfer-leader")
				testsupport.WaitFor(e.t, 20*time.Second, "leadership to move", func() error {
					if l := e.c.Leader(); l < 0 || l == before {
						return fmt.Errorf("leader %d", l)
					}
					return nil
				})
			}
		}},
	}, crashLoops()...)
}

func isolateLeader(e *env) {
	l := e.leader()
	e.serving.set(l, cutOff)
	e.isolate(l)
	e.hold()
	e.heal()
}

// cutLeaderOneWay drops the packets the leader sends to every other node
// (outgoing) or those they send to it.
func cutLeaderOneWay(e *env, outgoing bool) {
	l := e.leader()
	e.serving.set(l, cutOff)
	var pairs [][2]int
	for _, j := range e.others(l) {
		if outgoing {
			pairs = append(pairs, [2]int{l, j})
		} else {
			pairs = append(pairs, [2]int{j, l})
		}
	}
	e.cut(pairs...)
	e.hold()
	e.heal()
}

// randomMix chains three faults chosen with a seeded generator, so that a
// failing mix can be replayed (RAFTKV_MIX_SEED).
func randomMix(seed uint64) scenario {
	return scenario{name: fmt.Sprintf("random-mix-%d", seed), fault: func(e *env) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		var chosen []scenario
		for _, s := range faults() {
			switch {
			case s.name == "kill-all", s.name == "flapping",
				strings.HasPrefix(s.name, "member-replace"), strings.HasPrefix(s.name, "snapshot-install"),
				strings.HasPrefix(s.name, "splits"), s.ranges: // (their own set-up, or checks of it)
			default:
				// Crash loops are long and run on their own.
				if s.clients == nil && !strings.HasPrefix(s.name, "crash-loop/") {
					chosen = append(chosen, s)
				}
			}
		}
		for range 3 {
			s := chosen[rnd.IntN(len(chosen))]
			e.t.Logf("random mix (seed %d): %s", seed, s.name)
			s.fault(e)
			e.heal()
			e.c.WaitLeader(20 * time.Second)
			time.Sleep(time.Second) // traffic between faults
		}
	}}
}

func installSnapshot(e *env) {
	f := e.follower()
	l := e.leader()
	offL, offF := len(e.c.Procs[l].Log.String()), len(e.c.Procs[f].Log.String())
	e.serving.set(f, cutOff)
	e.isolate(f)
	e.waitLog(l, offL, "compacting logs", 60*time.Second) // the others moved past it
	e.hold()
	e.heal()
	e.waitLog(f, offF, "restored snapshot", 30*time.Second)
}

// replaceMember removes a follower and adds a fresh node in its place.
func replaceMember(e *env) (removed string, fresh *proccluster.Proc) {
	f := e.follower()
	e.serving.set(f, down)
	e.c.ExpectExit(f) // removed, it shuts down by itself
	removed = e.c.Procs[f].ID
	e.operator(http.MethodDelete, "/v1/operator/raft/peer?id="+removed)
	e.c.Kill(f)
	fresh = e.c.AddBare()
	e.operator(http.MethodPut, "/v1/operator/raft/peer?id="+fresh.ID+"&address="+fresh.Addr)
	e.hold()
	return removed, fresh
}

// replaceMemberOfEveryRange replaces a member, and then the fresh node
// must hold a voting replica of every range and the removed one none.
func replaceMemberOfEveryRange(e *env) {
	removed, fresh := replaceMember(e)
	testsupport.WaitFor(e.t, 60*time.Second, "the fresh node in every range, the removed one in none", func() error {
		ranges, err := e.ranges(fresh.Addr)
		if err != nil {
			return err
		}
		all, err := e.ranges(e.c.Procs[e.leader()].Addr)
		if err != nil {
			return err
		}
		if len(ranges) != len(all) {
			return fmt.Errorf("the fresh node lists %d ranges, the leader %d", len(ranges), len(all))
		}
		for _, r := range ranges {
			if r.FromMeta {
				return fmt.Errorf("the fresh node holds no replica of range %d yet", r.ID)
			}
			voter := false
			for _, rep := range r.Replicas {
				if rep.Node == removed {
					return fmt.Errorf("range %d still has %s", r.ID, removed)
				}
				voter = voter || rep.Node == fresh.ID && rep.Voter
			}
			if !voter {
				return fmt.Errorf("range %d: %s is not a voter yet (%+v)", r.ID, fresh.ID, r.Replicas)
			}
		}
		return nil
	})
}

// splitsDuringFaults splits while the fault is on: under a one-way cut of
// the leader, with a follower cut off (it catches up through the split),
// and right before a majority crash. (It found range 0's new leader
// refusing every split while a server it had not heard from was cut off.)
func splitsDuringFaults(e *env) {
	l := e.leader()
	e.serving.set(l, cutOff)
	var out [][2]int
	for _, j := range e.others(l) {
		out = append(out, [2]int{l, j})
	}
	e.cut(out...)
	e.split(e.others(l)[0], "r12/", false) // may apply or not: leaders change under it
	e.hold()
	e.heal()

	f := e.follower()
	e.serving.set(f, cutOff)
	e.isolate(f)
	e.split(e.others(f)[0], "r14/", true)
	e.hold()
	e.heal()

	e.split(e.leader(), "r16/", true)
	leader := e.leader()
	survivor := e.others(leader)[e.rnd.IntN(2)]
	e.serving.set(survivor, cutOff) // alone, it must answer fast, not serve
	for _, v := range e.others(survivor) {
		e.kill(v)
	}
	e.hold()
	for _, v := range e.others(survivor) {
		e.start(v)
	}
	e.serving.set(survivor, serving)
}

// split asks node i to split at key, as an operator would: again while
// there is no leader (a range's leader may be the node a fault cut off),
// until the boundary is there; must: within 30 s, or the test fails. A
// split is not keyed: one that applied is refused the second time, and
// the range listing says it is there.
func (e *env) split(i int, key string, must bool) {
	deadline := time.Now().Add(30 * time.Second)
	if !must {
		deadline = time.Now().Add(e.tm.hold)
	}
	for {
		req, _ := http.NewRequest(http.MethodPost, e.c.URL(e.c.Procs[i].Addr, "/v1/operator/range/split?key="+key), nil)
		resp, err := e.c.HTTPClient(10 * time.Second).Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			e.t.Logf("split at %s: %d %s", key, resp.StatusCode, strings.TrimSpace(string(body)))
			if resp.StatusCode == http.StatusOK || e.boundaryAt(i, key) {
				return
			}
		} else {
			e.t.Logf("split at %s: %v", key, err)
		}
		if time.Now().After(deadline) {
			if must {
				e.t.Fatalf("no split at %s within 30 s", key)
			}
			return
		}
		time.Sleep(200 * time.Millisecond) // an operator's retry, not synchronisation
	}
}

// ranges lists the ranges the node at addr knows.
func (e *env) ranges(addr string) ([]api.Range, error) {
	resp, err := e.c.HTTPClient(5 * time.Second).Get(e.c.URL(addr, "/v1/operator/ranges"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ranges []api.Range
	if err := json.NewDecoder(resp.Body).Decode(&ranges); err != nil {
		return nil, err
	}
	return ranges, nil
}

// boundaryAt says whether node i lists a range starting at key.
func (e *env) boundaryAt(i int, key string) bool {
	ranges, err := e.ranges(e.c.Procs[i].Addr)
	if err != nil {
		return false
	}
	for _, r := range ranges {
		if r.Start == key {
			return true
		}
	}
	return false
}
