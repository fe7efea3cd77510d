package robustness

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The lock holders' view (TestLockHoldersView): what each holder believed,
// the interval in which it took itself for the holder, against what the
// cluster did, seen by a watcher's linearizable reads. The promise: raftkv's
// own lock clients are told that they lost a lock, on their own clock,
// before the cluster releases it (invalidates the session), and so before
// anyone else can get it. These checkers are pure functions of the history,
// so that each can be shown to fail (TestLockHoldersViewChecks).

// tenure names one holding of a lock: the session and the LockIndex it was
// taken under. Either may be unknown (empty, 0): a raftkv lock command
// knows only its index (RAFTKV_LOCK_INDEX), a semaphore slot has no index.
type tenure struct {
	Session string
	Index   uint64
}

func (t tenure) String() string {
	s := "session ?"
	if t.Session != "" {
		s = "session " + shortID(t.Session)
	}
	if t.Index != 0 {
		s += fmt.Sprintf(" index %d", t.Index)
	}
	return s
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// holding is one holder's belief: from when it learnt it held the lock
// (Lock or Campaign returned, its command started) to when it was told it
// lost it (Lost closed, its command stopped), or let it go.
type holding struct {
	Key    string // the key's name in the scenario
	Holder string // who, e.g. "holder via n2"
	Start  time.Time
	End    time.Time
	Told   bool   // End is when it was told it had lost the lock
	How    string // how it ended, for the report
	Tenure tenure
}

// observation is one linearizable read of a lock key by the watcher: called
// and returned on the test's clock, and the tenures it saw holding the key
// (none if free, several at most for a semaphore of a higher limit).
type observation struct {
	Call, Return time.Time
	Held         []tenure
}

// holds reports whether the read saw t hold the key. A tenure with neither
// session nor index matches nothing: a holder the test failed to identify
// shows up as a violation instead of passing every check.
func (o observation) holds(t tenure) bool {
	if t == (tenure{}) {
		return false
	}
	for _, h := range o.Held {
		if h.Session != "" && (t.Session == "" || h.Session == t.Session) && (t.Index == 0 || h.Index == t.Index) {
			return true
		}
	}
	return false
}

// overlap: two holders of one key who both believed they held it.
type overlap struct {
	A, B holding
	By   time.Duration
}

func (o overlap) String() string {
	return fmt.Sprintf("%s: %s and %s both believed they held the lock for %s",
		o.A.Key, o.A.Holder, o.B.Holder, o.By.Round(time.Millisecond))
}

// overlaps lists every pair of holdings of one key that overlap in time,
// longest first.
func overlaps(hs []holding) []overlap {
	var out []overlap
	for i, a := range hs {
		for _, b := range hs[i+1:] {
			if a.Key != b.Key {
				continue
			}
			if by := earliest(a.End, b.End).Sub(latest(a.Start, b.Start)); by > 0 {
				out = append(out, overlap{A: a, B: b, By: by})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].By > out[j].By })
	return out
}

// earlyRelease: a read that returned before holder H was told, called after
// H acquired, and that saw the key no longer H's. Linearizability puts the
// release before that read's return: the cluster let go of H's lock while
// H still believed it held it.
type earlyRelease struct {
	H    holding
	Read observation // the earliest returning such read
	Lead time.Duration
}

func (e earlyRelease) String() string {
	return fmt.Sprintf("%s: the lock of %s (%s) was gone %s before it was told (a read returned %s not seeing it)",
		e.H.Key, e.H.Holder, e.H.Tenure, e.Lead.Round(time.Millisecond), describeHeld(e.Read.Held))
}

func describeHeld(held []tenure) string {
	if len(held) == 0 {
		return "the key free"
	}
	var parts []string
	for _, t := range held {
		parts = append(parts, t.String())
	}
	return "the key held by " + strings.Join(parts, ", ")
}

// releasesBeforeTold finds, for each holding, the earliest returning read
// that breaks release-before-told; reads are by key.
func releasesBeforeTold(hs []holding, reads map[string][]observation) []earlyRelease {
	var out []earlyRelease
	for _, h := range hs {
		var first *observation
		for i, r := range reads[h.Key] {
			if !r.Call.After(h.Start) || !r.Return.Before(h.End) || r.holds(h.Tenure) {
				continue
			}
			if first == nil || r.Return.Before(first.Return) {
				first = &reads[h.Key][i]
			}
		}
		if first != nil {
			out = append(out, earlyRelease{H: h, Read: *first, Lead: h.End.Sub(first.Return)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Lead > out[j].Lead })
	return out
}

// gap: a time in which nobody believed they held a key, between one
// holder's end and the next one's start.
type gap struct {
	From, To      time.Time
	Before, After string // the holders on either side
}

func (g gap) Len() time.Duration { return g.To.Sub(g.From) }

// longestGaps returns, per key, the longest time with no holder between
// two holdings (none for a key that never changed hands, or whose holders
// always overlapped).
func longestGaps(hs []holding) map[string]gap {
	byKey := map[string][]holding{}
	for _, h := range hs {
		byKey[h.Key] = append(byKey[h.Key], h)
	}
	out := map[string]gap{}
	for key, list := range byKey {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Start.Before(list[j].Start) })
		last := list[0]
		for _, h := range list[1:] {
			if g := (gap{From: last.End, To: h.Start, Before: last.Holder, After: h.Holder}); g.Len() > 0 && g.Len() > out[key].Len() {
				out[key] = g
			}
			if h.End.After(last.End) {
				last = h
			}
		}
	}
	return out
}

// unmoved lists those of keys that no second holder got.
func unmoved(hs []holding, keys []string) []string {
	holders := map[string]map[string]bool{}
	for _, h := range hs {
		if holders[h.Key] == nil {
			holders[h.Key] = map[string]bool{}
		}
		holders[h.Key][h.Holder] = true
	}
	var out []string
	for _, k := range keys {
		if len(holders[k]) < 2 {
			out = append(out, k)
		}
	}
	return out
}

// renewRecord is one session renew a Go client sent: when, when its answer
// came, and the status (0: no answer).
type renewRecord struct {
	Sent, Done time.Time
	Status     int
}

// lostWhileRenewing explains why a holder that was told at lost had not
// lost its lock by its own give-up (which comes close to TTL after the last
// renew that succeeded was sent, the renewals having failed since), or
// returns "": either the cluster answered a renew 404 less than TTL after
// a renew it had accepted was sent, or Lost closed sooner after an accepted
// renew than a client renewing every TTL/2, failing over between endpoints
// (an attempt on the dead one costs at most the attempt timeout), can go
// without one.
func lostWhileRenewing(lost time.Time, renews []renewRecord, ttl, attempt time.Duration) string {
	var lastOK time.Time
	for _, r := range renews {
		if r.Done.After(lost) {
			continue
		}
		switch r.Status {
		case 200:
			if r.Sent.After(lastOK) {
				lastOK = r.Sent
			}
		case 404:
			if !lastOK.IsZero() && r.Done.Sub(lastOK) < ttl {
				return fmt.Sprintf("the cluster answered a renew 404 %s after a renew it accepted was sent (TTL %s)",
					r.Done.Sub(lastOK).Round(time.Millisecond), ttl)
			}
		}
	}
	if lastOK.IsZero() {
		return ""
	}
	if since, bound := lost.Sub(lastOK), ttl/2+attempt+time.Second; since < bound {
		return fmt.Sprintf("Lost closed %s after a renew that succeeded was sent, while renewing (a renew is due every %s, and one failing over takes at most %s more)",
			since.Round(time.Millisecond), ttl/2, attempt)
	}
	return ""
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
