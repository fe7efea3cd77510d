//go:build linux

package patroni

import (
	"fmt"
	"sync"
	"time"
)

// The split-brain checker: never two PostgreSQL primaries at once.
//
// Every ~100 ms it asks every member's Patroni for GET /patroni, recording
// when each request was sent and when its answer came. An answer "primary"
// (see status.primary: PostgreSQL's own pg_is_in_recovery() = false, from a
// query that succeeded) means the server took writes at some instant
// between the two. PostgreSQL never goes back into recovery without a
// restart, so one postmaster (named by its start time) that was a primary
// stays one until it exits: a postmaster answered "primary" by requests A
// and later B was a primary during the whole of [A answered, B sent]. Two
// such intervals of different members that overlap are two servers that
// took writes at the same moment: a split brain, for certain. The check
// has no false alarms (polls are not simultaneous, so single samples prove
// nothing, and it asks nothing of them) and misses only overlaps shorter
// than about two polling periods.
//
// That is the guarantee Patroni gives with a DCS that keeps its promises:
// a member promotes itself only with the leader key, which Consul (and
// raftkv) gives to one session at a time and frees only when the
// holder's session dies (TTL) or the holder deletes it; a primary that
// cannot renew the key demotes itself within retry_timeout, before the
// key can expire (loop_wait + 2*retry_timeout <= ttl). Patroni's own role
// reports (which member holds the key) may overlap for a moment during a
// switchover without harm; whether two servers take writes may not.
type splitBrainChecker struct {
	c      *pgCluster
	stopCh chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	tenures  map[tenureKey]*tenure
	problems []string
	polls    int
	history  map[string][]roleChange // member → role changes seen
}

type tenureKey struct{ member, postmasterStart string }

// tenure is one postmaster's time as a primary: certainly a primary from
// from to to (from > to while only one answer was seen).
type tenure struct {
	key      tenureKey
	timeline int
	from, to time.Time
}

type roleChange struct {
	at   time.Time
	role string
}

func startChecker(c *pgCluster) *splitBrainChecker {
	k := &splitBrainChecker{c: c, stopCh: make(chan struct{}), done: make(chan struct{}),
		tenures: map[tenureKey]*tenure{}, history: map[string][]roleChange{}}
	c.checker = k
	go k.run()
	return k
}

func (k *splitBrainChecker) run() {
	defer close(k.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var wg sync.WaitGroup
		for _, m := range k.c.members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent := time.Now()
				s, err := k.c.status(m)
				k.observe(m, sent, time.Now(), s, err)
			}()
		}
		wg.Wait()
		select {
		case <-k.stopCh:
			return
		case <-tick.C:
		}
	}
}

func (k *splitBrainChecker) observe(m *member, sent, answered time.Time, s status, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.polls++
	role := "unreachable"
	if err == nil {
		role = s.Role + "/" + s.State
	}
	if h := k.history[m.name]; len(h) == 0 || h[len(h)-1].role != role {
		k.history[m.name] = append(h, roleChange{at: answered, role: role})
	}
	if err != nil || !s.primary() {
		return
	}
	key := tenureKey{m.name, s.PostmasterStartTime}
	tn := k.tenures[key]
	if tn == nil {
		tn = &tenure{key: key, timeline: s.Timeline, from: answered, to: sent}
		k.tenures[key] = tn
	} else if sent.After(tn.to) {
		tn.to = sent
	}
	if !tn.to.After(tn.from) {
		return
	}
	for _, o := range k.tenures {
		if o.key.member == key.member || !o.to.After(o.from) {
			continue
		}
		if tn.from.Before(o.to) && o.from.Before(tn.to) {
			p := fmt.Sprintf("two primaries at once: %s (postmaster started %s, timeline %d) from %s to %s and %s (postmaster started %s, timeline %d) from %s to %s",
				key.member, key.postmasterStart, tn.timeline, stamp(tn.from), stamp(tn.to),
				o.key.member, o.key.postmasterStart, o.timeline, stamp(o.from), stamp(o.to))
			if len(k.problems) == 0 || k.problems[len(k.problems)-1] != p {
				k.problems = append(k.problems, p)
			}
		}
	}
}

// stop ends the polling and returns what it found.
func (k *splitBrainChecker) stop() (problems []string, polls int) {
	close(k.stopCh)
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.problems, k.polls
}

// roles describes the role changes the checker saw since since.
func (k *splitBrainChecker) roles(since time.Time) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := ""
	for _, m := range k.c.members {
		out += m.name + ":"
		for _, rc := range k.history[m.name] {
			if !rc.at.Before(since) {
				out += " " + stamp(rc.at) + " " + rc.role
			}
		}
		out += "\n"
	}
	return out
}

func stamp(t time.Time) string { return t.Format("15:04:05.000") }

// writer runs an operation (an INSERT through one member, a write through
// one raftkv node) every interval and records when each one succeeded: the
// write availability of that server.
type writer struct {
	once   sync.Once
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	ok     []time.Time
	errs   []string
}

func startWriter(interval time.Duration, op func(i int) error) *writer {
	w := &writer{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			err := op(i)
			now := time.Now()
			w.mu.Lock()
			if err == nil {
				w.ok = append(w.ok, now)
			} else {
				w.errs = append(w.errs, stamp(now)+" "+err.Error())
			}
			w.mu.Unlock()
			select {
			case <-w.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop ends the writes (again: nothing) and waits for the one under way.
func (w *writer) stop() {
	w.once.Do(func() { close(w.stopCh) })
	<-w.done
}

// firstOKAfter is the first successful write at or after t.
func (w *writer) firstOKAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.ok {
		if !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// maxGap is the longest time without a successful write within
// [from, to] (counting from from and up to to).
func (w *writer) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, gap := from, time.Duration(0)
	for _, at := range w.ok {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

func (w *writer) counts() (ok, failed int, lastErrs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ok), len(w.errs), w.errs[max(0, len(w.errs)-5):]
}
