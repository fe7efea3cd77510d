package robustness

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Availability bounds (API.md §3, and what etcd and Consul users expect: a
// leader loss costs about an election). With the default raft timing
// (election timeout 1 s):
const (
	electionTimeout = time.Second
	// gapBound: the longest a node that can serve may go without completing
	// a read or a write.
	gapBound = electionTimeout + 3*time.Second
	// refusalBound: how long a node that cannot serve (cut off from the
	// majority) may take to answer a request at all (503 or 504).
	refusalBound = 3 * time.Second
)

// servingLog records when each node is expected to serve: it is running
// and reaches a majority that has (or can elect) a leader it can reach.
type servingLog struct {
	start   time.Time
	mu      sync.Mutex
	changes map[int][]toggle
}

type toggle struct {
	at time.Duration
	on bool
}

func newServingLog(start time.Time, nodes int) *servingLog {
	s := &servingLog{start: start, changes: map[int][]toggle{}}
	for i := range nodes {
		s.changes[i] = []toggle{{0, true}}
	}
	return s
}

func (s *servingLog) set(i int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes[i] = append(s.changes[i], toggle{time.Since(s.start), on})
}

// windows returns node i's serving windows up to end.
func (s *servingLog) windows(i int, end time.Duration) [][2]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][2]time.Duration
	var from time.Duration
	on := false
	for _, c := range s.changes[i] {
		switch {
		case c.on && !on:
			from, on = c.at, true
		case !c.on && on:
			out = append(out, [2]time.Duration{from, c.at})
			on = false
		}
	}
	if on {
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
	refusal  time.Duration // slowest answer from a node that could not serve
	refusals int           // calls to nodes that could not serve
}

func (a availability) String() string {
	s := fmt.Sprintf("longest stall %s (n%d at %s)", a.gap.Round(time.Millisecond), a.gapNode+1, a.gapAt.Round(time.Millisecond))
	if a.refusals > 0 {
		s += fmt.Sprintf(", slowest answer from a cut-off node %s over %d calls", a.refusal.Round(time.Millisecond), a.refusals)
	}
	return s
}

// measure computes the longest stall of every node that had clients, over
// its serving windows, and the slowest answer of nodes outside theirs.
// end is when traffic stopped.
func measure(calls *callLog, serving *servingLog, end time.Duration, clientTimeout time.Duration) availability {
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
		windows := serving.windows(node, end)
		for _, w := range windows {
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
		for _, c := range cs {
			if inside(c.start, windows) {
				continue
			}
			a.refusals++
			d := c.end - c.start
			if c.status == 0 {
				d = max(d, clientTimeout)
			}
			a.refusal = max(a.refusal, d)
		}
	}
	return a
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
