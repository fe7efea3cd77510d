package crashtest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// model is what the data dir must hold: everything the children
// acknowledged, plus the one op in doubt when the last child was killed.
type model struct {
	log        logView
	stable     map[string]string
	commit     uint64
	committed  []uint64  // committed[i]: the term of committed entry i
	applied    uint64    // the FSM's applied index
	maxApplied uint64    // the highest it ever was
	snaps      []snapObs // acknowledged snapshots not known to be reaped
	pending    []string  // the op in doubt: its "B" line
}

func newModel() *model {
	return &model{log: logView{terms: map[uint64]uint64{}}, stable: map[string]string{}, committed: []uint64{0}}
}

// logView is a log's bounds and the term of every entry in them.
type logView struct {
	first, last uint64 // 0, 0: empty
	terms       map[uint64]uint64
}

func (v logView) clone() logView {
	v.terms = maps.Clone(v.terms)
	return v
}

func (v *logView) append(from, to, term uint64) error {
	if v.last != 0 && from != v.last+1 {
		return fmt.Errorf("append at %d after %d", from, v.last)
	}
	if v.last == 0 {
		v.first = from
	}
	for i := from; i <= to; i++ {
		v.terms[i] = term
	}
	v.last = to
	return nil
}

func (v *logView) truncTail(k uint64) {
	for i := k; i <= v.last; i++ {
		delete(v.terms, i)
	}
	v.last = k - 1
	if v.last < v.first {
		v.first, v.last = 0, 0
	}
}

func (v *logView) truncHead(k uint64) {
	for i := v.first; i <= k && i <= v.last; i++ {
		delete(v.terms, i)
	}
	v.first = k + 1
	if v.first > v.last {
		v.first, v.last = 0, 0
	}
}

// line takes one line of a child's output (but "O").
func (m *model) line(f []string, st *stats) error {
	switch f[0] {
	case "B":
		m.pending = f[1:]
		return nil
	case "A":
		m.pending = nil
		if f[1] != "commit" {
			st.acked++
		}
		return m.ack(f[1], f[2:], st)
	}
	return fmt.Errorf("unexpected line %q", f)
}

func (m *model) ack(op string, a []string, st *stats) error {
	u := func(i int) uint64 { v, _ := strconv.ParseUint(a[i], 10, 64); return v }
	switch op {
	case "append":
		return m.log.append(u(0), u(1), u(2))
	case "tail":
		if u(0) <= m.commit || u(1) != m.log.last {
			return fmt.Errorf("tail truncation %v of log %d..%d with %d committed", a, m.log.first, m.log.last, m.commit)
		}
		st.tails++
		m.log.truncTail(u(0))
	case "head":
		st.heads++
		m.log.truncHead(u(1))
	case "stable":
		m.stable[a[0]] = a[1]
	case "commit":
		for i := m.commit + 1; i <= u(0); i++ {
			t, ok := m.log.terms[i]
			if !ok {
				return fmt.Errorf("commit of %d, which is not in the log", i)
			}
			m.committed = append(m.committed, t)
		}
		m.commit = u(0)
	case "apply":
		m.applied = u(1)
		m.maxApplied = max(m.maxApplied, m.applied)
	case "snap":
		m.snaps = append(m.snaps, snapObs{Index: u(0), Term: u(1), ID: a[2], Digest: a[3]})
	case "restore":
		m.applied = u(2)
		m.maxApplied = max(m.maxApplied, m.applied)
	default:
		return fmt.Errorf("unknown op %q", op)
	}
	return nil
}

// judge lists how obs breaks the model (nil: it does not), then takes obs as
// the new model: what an op in doubt did is now known.
func (m *model) judge(obs *observation, ref *reference, st *stats) ([]string, error) {
	problems := slices.Clone(obs.Problems)
	if len(problems) > 0 {
		return problems, nil
	}
	problems = append(problems, m.judgeLog(obs, st)...)
	problems = append(problems, m.judgeStable(obs)...)
	more, err := m.judgeState(obs, ref, st)
	if err != nil {
		return nil, err
	}
	problems = append(problems, more...)
	if len(problems) > 0 {
		return problems, nil
	}
	m.log = viewOf(obs)
	m.stable = obs.Stable
	m.applied = obs.Applied
	m.snaps = slices.DeleteFunc(m.snaps, func(a snapObs) bool { return find(obs.Snaps, a.ID) == nil })
	m.pending = nil
	st.tmpSnaps = obs.TmpSnaps
	return nil, nil
}

func (m *model) judgeLog(obs *observation, st *stats) []string {
	got := viewOf(obs)
	if p := m.pending; len(p) > 0 && (p[0] == "append" || p[0] == "tail" || p[0] == "head") {
		landed := m.log.clone()
		u := func(i int) uint64 { v, _ := strconv.ParseUint(p[i], 10, 64); return v }
		switch p[0] {
		case "append":
			// Entries past the last acknowledged one may be there or not;
			// any prefix of the batch is a consistent log.
			to := u(2)
			if got.last >= u(1) && got.last < to {
				to = got.last
				st.partialAppends++
			}
			landed.append(u(1), to, u(3))
		case "tail":
			landed.truncTail(u(1))
		case "head":
			landed.truncHead(u(2))
		}
		switch {
		case sameLog(got, landed) == "":
			st.inDoubt[p[0]+" landed"]++
			return nil
		case sameLog(got, m.log) == "":
			st.inDoubt[p[0]+" did not land"]++
			return nil
		}
		return []string{fmt.Sprintf("log: %s; or if the %s in doubt landed: %s", sameLog(got, m.log), p[0], sameLog(got, landed))}
	}
	if diff := sameLog(got, m.log); diff != "" {
		return []string{"log: " + diff}
	}
	return nil
}

func viewOf(obs *observation) logView {
	v := logView{first: obs.First, last: obs.Last, terms: map[uint64]uint64{}}
	for _, r := range obs.Runs {
		for i := r.From; i <= r.To; i++ {
			v.terms[i] = r.Term
		}
	}
	return v
}

func sameLog(got, want logView) string {
	if got.first != want.first || got.last != want.last {
		return fmt.Sprintf("holds %d..%d, acknowledged %d..%d", got.first, got.last, want.first, want.last)
	}
	for i := got.first; i <= got.last && got.last > 0; i++ {
		g, ok := got.terms[i]
		if !ok {
			return fmt.Sprintf("entry %d is missing", i)
		}
		if g != want.terms[i] {
			return fmt.Sprintf("entry %d has term %d, acknowledged in term %d", i, g, want.terms[i])
		}
	}
	return ""
}

func (m *model) judgeStable(obs *observation) []string {
	var problems []string
	keys := maps.Clone(m.stable)
	maps.Copy(keys, obs.Stable)
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		got, want := obs.Stable[k], m.stable[k]
		p := m.pending
		if got == want || (len(p) == 3 && p[0] == "stable" && p[1] == k && p[2] == got) {
			continue
		}
		problems = append(problems, fmt.Sprintf("stable store: %s = %q, acknowledged %q", k, got, want))
	}
	return problems
}

// judgeState checks the FSM and the snapshots against the reference.
func (m *model) judgeState(obs *observation, ref *reference, st *stats) ([]string, error) {
	var problems []string
	// The FSM may come back at an older index than it last acknowledged:
	// raft replays the log (or restores a snapshot) from wherever it is, so
	// any index it applied will do, as long as its state is that index's.
	ok := obs.Applied <= m.maxApplied
	midRestore := false
	if p := m.pending; len(p) == 3 {
		u := func(i int) uint64 { v, _ := strconv.ParseUint(p[i], 10, 64); return v }
		switch p[0] {
		case "apply": // a batch too big for one transaction is committed in several
			ok = ok || obs.Applied <= u(2)
		case "restore": // 0: killed half way, the next start restores again
			midRestore = obs.Applied == 0
			ok = ok || obs.Applied == u(2)
		}
	}
	if !ok {
		problems = append(problems, fmt.Sprintf("fsm: applied index %d, but it never applied beyond %d (op in doubt: %v)", obs.Applied, m.maxApplied, m.pending))
	}
	switch {
	case midRestore:
		st.midRestores++
	case obs.Applied < m.applied:
		st.rollbacks = append(st.rollbacks, fmt.Sprintf("%d→%d (%s)", m.applied, obs.Applied, strings.Join(m.pending, " ")))
		if len(m.pending) > 0 && m.pending[0] == "restore" {
			st.rollbacksInRestore++
		}
	}
	// The reference moves forward only: ask for indexes in order.
	var indexes []uint64
	if ok && !midRestore {
		indexes = append(indexes, obs.Applied)
	}
	for _, s := range obs.Snaps {
		if s.Err == "" && s.Index <= m.commit {
			indexes = append(indexes, s.Index)
		}
	}
	slices.Sort(indexes)
	for _, i := range indexes {
		if _, err := ref.digest(i, m.committed); err != nil {
			return nil, err
		}
	}
	if ok && !midRestore && obs.FSM != ref.digests[obs.Applied] {
		problems = append(problems, fmt.Sprintf("fsm: state at applied index %d differs from a fresh FSM's that applied the same entries", obs.Applied))
	}
	for _, s := range obs.Snaps {
		switch {
		case s.Err != "":
			problems = append(problems, fmt.Sprintf("snapshot %s is listed but does not open: %s", s.ID, s.Err))
		case s.Index > m.commit || s.Term != m.committed[s.Index]:
			problems = append(problems, fmt.Sprintf("snapshot %s: index %d term %d is not a committed entry", s.ID, s.Index, s.Term))
		case s.Digest != ref.digests[s.Index]:
			problems = append(problems, fmt.Sprintf("snapshot %s: state differs from a fresh FSM's at index %d", s.ID, s.Index))
		}
	}
	for _, a := range m.snaps {
		newer := 0
		for _, s := range obs.Snaps {
			if s.Term > a.Term || (s.Term == a.Term && (s.Index > a.Index || (s.Index == a.Index && s.ID > a.ID))) {
				newer++
			}
		}
		switch s := find(obs.Snaps, a.ID); {
		case s == nil && newer < retain:
			problems = append(problems, fmt.Sprintf("acknowledged snapshot %s (index %d) is gone, and only %d newer ones are listed", a.ID, a.Index, newer))
		case s != nil && (s.Index != a.Index || s.Term != a.Term || s.Digest != a.Digest):
			problems = append(problems, fmt.Sprintf("snapshot %s is %d/%d %s, acknowledged %d/%d %s", a.ID, s.Index, s.Term, s.Digest, a.Index, a.Term, a.Digest))
		}
	}
	return problems, nil
}

func find(snaps []snapObs, id string) *snapObs {
	for i := range snaps {
		if snaps[i].ID == id {
			return &snaps[i]
		}
	}
	return nil
}
