package robustness

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftstore"
)

// Availability bounds (what etcd and Consul users expect: a leader loss
// costs about an election). With the default raft timing:
const (
	electionTimeout = raftstore.DefaultElectionTimeout
	// gapBound: the longest a node that can serve may go without completing
	// a read or a write.
	gapBound = electionTimeout + 3*time.Second
	// refusalBound: how long a node cut off from the leader may take to
	// answer a request at all (503 or 504). A deposed leader answers within
	// its lease (250ms); a follower once it has noticed the loss (up to three
	// heartbeat timeouts) and waited for an election (two election
	// timeouts). No answer within the client's timeout fails it too.
	refusalBound = clientTimeout
)

// nodeState is what a node is expected to do at a moment of a scenario.
type nodeState int

const (
	// serving: running, and it reaches a majority with (or able to elect) a
	// leader it can reach: it must complete requests.
	serving nodeState = iota
	// cutOff: running and reachable by its clients, but cut off from the
	// leader by the network: it must answer them quickly (503 or 504).
	cutOff
	// down: killed, paused or removed: nothing is expected of it.
	down
)

// servingLog records what each node is expected to do, over time.
type servingLog struct {
	start   time.Time
	mu      sync.Mutex
	changes map[int][]change
}

type change struct {
	at    time.Duration
	state nodeState
}

func newServingLog(start time.Time, nodes int) *servingLog {
	s := &servingLog{start: start, changes: map[int][]change{}}
	for i := range nodes {
		s.changes[i] = []change{{0, serving}}
	}
	return s
}

func (s *servingLog) set(i int, st nodeState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes[i] = append(s.changes[i], change{time.Since(s.start), st})
}

// windows returns the periods, up to end, in which node i was in state st.
func (s *servingLog) windows(i int, st nodeState, end time.Duration) [][2]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][2]time.Duration
	var from time.Duration
	in := false
	for _, c := range s.changes[i] {
		switch {
		case c.state == st && !in:
			from, in = c.at, true
		case c.state != st && in:
			out = append(out, [2]time.Duration{from, c.at})
			in = false
		}
	}
	if in {
		out = append(out, [2]time.Duration{from, end})
	}
	return out
}

// callLog keeps every HTTP call the clients made.
type callLog struct {
	start time.Time
	mu    sync.Mutex
	calls []callRecord
}

type callRecord struct {
	node       int
	start, end time.Duration
	status     int // 0: no answer (timeout or connection failure)
}

func (l *callLog) add(node int, start time.Time, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, callRecord{node, start.Sub(l.start), time.Since(l.start), status})
}

// served: the node completed the operation (503 and 504 did not).
func served(status int) bool { return status == 200 || status == 404 || status == 409 }

// availability is what a run measured.
type availability struct {
	gap      time.Duration // longest serving window without a completed op
	gapNode  int
	gapAt    time.Duration // when that window began
	refusal  time.Duration // slowest answer from a node cut off from the leader
	refusals int           // calls to nodes cut off from the leader
}

func (a availability) String() string {
	s := fmt.Sprintf("longest stall %s (n%d at %s)", a.gap.Round(time.Millisecond), a.gapNode+1, a.gapAt.Round(time.Millisecond))
	if a.refusals > 0 {
		s += fmt.Sprintf(", slowest answer from a cut-off node %s over %d calls", a.refusal.Round(time.Millisecond), a.refusals)
	}
	return s
}

// measure computes the longest stall of every node that had clients, over
// its serving windows, and the slowest answer of nodes cut off from the
// leader. end is when traffic stopped.
func measure(calls *callLog, states *servingLog, end time.Duration, clientTimeout time.Duration) availability {
	calls.mu.Lock()
	defer calls.mu.Unlock()
	byNode := map[int][]callRecord{}
	for _, c := range calls.calls {
		byNode[c.node] = append(byNode[c.node], c)
	}
	var a availability
	for node, cs := range byNode {
		var done []time.Duration
		for _, c := range cs {
			if served(c.status) {
				done = append(done, c.end)
			}
		}
		sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
		for _, w := range states.windows(node, serving, end) {
			prev := w[0]
			for _, t := range done {
				if t <= w[0] || t > w[1] {
					continue
				}
				if t-prev > a.gap {
					a.gap, a.gapNode, a.gapAt = t-prev, node, prev
				}
				prev = t
			}
			if w[1]-prev > a.gap {
				a.gap, a.gapNode, a.gapAt = w[1]-prev, node, prev
			}
		}
		cut := states.windows(node, cutOff, end)
		downs := states.windows(node, down, end)
		for _, c := range cs {
			if !inside(c.start, cut) {
				continue
			}
			a.refusals++
			d := c.end - c.start
			if c.status == 0 {
				if killed, at := wentDown(c, downs); killed {
					// The scenario killed the node with the call in
					// flight: it was still within its time until then.
					d = at - c.start
				} else {
					d = max(d, clientTimeout) + time.Millisecond // no answer at all
				}
			}
			a.refusal = max(a.refusal, d)
		}
	}
	return a
}

// wentDown says whether the node of c was taken down (killed, paused)
// while c was in flight, and when.
func wentDown(c callRecord, downs [][2]time.Duration) (bool, time.Duration) {
	for _, w := range downs {
		if w[0] >= c.start && w[0] <= c.end {
			return true, w[0]
		}
	}
	return false, 0
}

func inside(t time.Duration, windows [][2]time.Duration) bool {
	for _, w := range windows {
		if t >= w[0] && t < w[1] {
			return true
		}
	}
	return false
}

// summary collects the measurements of repeated runs, per scenario.
type summary struct {
	mu   sync.Mutex
	runs map[string][]availability
}

func (s *summary) add(name string, a availability) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == nil {
		s.runs = map[string][]availability{}
	}
	s.runs[name] = append(s.runs[name], a)
}

func (s *summary) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.runs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		var gaps, refusals []time.Duration
		for _, a := range s.runs[n] {
			gaps = append(gaps, a.gap)
			if a.refusals > 0 {
				refusals = append(refusals, a.refusal)
			}
		}
		fmt.Fprintf(&b, "%-36s runs %2d  longest stall %s", n, len(gaps), dist(gaps))
		if len(refusals) > 0 {
			fmt.Fprintf(&b, "  slowest cut-off answer %s", dist(refusals))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// dist prints min / median / max.
func dist(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	r := func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
	return fmt.Sprintf("min %s med %s max %s", r(ds[0]), r(ds[len(ds)/2]), r(ds[len(ds)-1]))
}

// A call to a cut-off node that gets no answer counts as the client's
// whole timeout, unless the scenario killed the node with the call in
// flight: then it counts until the kill.
func TestMeasureCutOffCalls(t *testing.T) {
	start := time.Now()
	states := newServingLog(start, 1)
	states.changes[0] = []change{{0, serving}, {time.Second, cutOff}, {3 * time.Second, down}}
	calls := &callLog{start: start, calls: []callRecord{
		{node: 0, start: 1100 * time.Millisecond, end: 1300 * time.Millisecond, status: 503},
		{node: 0, start: 2800 * time.Millisecond, end: 3100 * time.Millisecond, status: 0}, // killed at 3s
	}}
	if a := measure(calls, states, 5*time.Second, clientTimeout); a.refusal != 200*time.Millisecond {
		t.Fatalf("slowest refusal %s, want 200ms (the killed call counts until the kill)", a.refusal)
	}
	calls.calls = append(calls.calls, callRecord{node: 0, start: 1500 * time.Millisecond, end: 1600 * time.Millisecond, status: 0})
	if a := measure(calls, states, 5*time.Second, clientTimeout); a.refusal <= clientTimeout {
		t.Fatalf("slowest refusal %s: a call without an answer from a running node must count as the client's timeout", a.refusal)
	}
}
