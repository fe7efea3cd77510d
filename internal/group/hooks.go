package group

import (
	"sync"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// Hooks attach a feature (sessions, ACLs, autopilot) to a group: the group
// calls them at these points and knows nothing of what they do. Every
// field is optional.
type Hooks struct {
	// LeadershipChanged runs on every change of this node's leadership
	// (true: it now leads), in the order raft reports them.
	LeadershipChanged func(leading bool)
	// Led runs once this node leads with everything committed before its
	// term applied (after its barrier).
	Led func()
	// Restored runs on the leader once an operator's snapshot has replaced
	// the state.
	Restored func()
	// Stamp runs on the leader just before an entry is proposed: it may
	// fill in what only the leader may choose (a session's ID) or refuse
	// the entry (nothing is done).
	Stamp func(e *fsm.Entry) error
	// Applied runs on the leader once an entry it proposed has applied.
	Applied func(e *fsm.Entry, res *kv.Result)
	// PeerRemoved runs when a server leaves the configuration.
	PeerRemoved func(id string)
}

// hookList holds the hooks of every attached feature.
type hookList struct {
	mu   sync.RWMutex
	list []Hooks
}

// Attach adds a feature's hooks; call it between Open and Start, so that
// no hook misses a change.
func (g *Group) Attach(h Hooks) {
	g.hooks.mu.Lock()
	defer g.hooks.mu.Unlock()
	g.hooks.list = append(g.hooks.list, h)
}

func (l *hookList) each(fn func(h *Hooks)) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i := range l.list {
		fn(&l.list[i])
	}
}

func (l *hookList) leadershipChanged(leading bool) {
	l.each(func(h *Hooks) {
		if h.LeadershipChanged != nil {
			h.LeadershipChanged(leading)
		}
	})
}

func (l *hookList) led() {
	l.each(func(h *Hooks) {
		if h.Led != nil {
			h.Led()
		}
	})
}

func (l *hookList) restored() {
	l.each(func(h *Hooks) {
		if h.Restored != nil {
			h.Restored()
		}
	})
}

func (l *hookList) stamp(e *fsm.Entry) (err error) {
	l.each(func(h *Hooks) {
		if h.Stamp != nil && err == nil {
			err = h.Stamp(e)
		}
	})
	return err
}

func (l *hookList) applied(e *fsm.Entry, res *kv.Result) {
	l.each(func(h *Hooks) {
		if h.Applied != nil {
			h.Applied(e, res)
		}
	})
}

func (l *hookList) peerRemoved(id string) {
	l.each(func(h *Hooks) {
		if h.PeerRemoved != nil {
			h.PeerRemoved(id)
		}
	})
}
