package group

import (
	"fmt"
	"sync"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// The form entries take in the log. A KV write has one form, which every
// release reads. The other kinds (sessions, ACLs, replica marks) have a
// typed form (fsm's version 3) that only releases from this one read, and
// the legacy form that rode inside a KV command (ACL changes as JSON). The
// leader writes the typed form once every server of the configuration has
// told it (in its autopilot stats) that it reads it, and the legacy form
// until then, so that a rolling upgrade never puts an entry in the log
// that a member cannot apply. Once the log carries an entry of a version,
// a later leader writes that version without waiting to hear every server
// (fsm.LogVersion): a new leader cannot hear a server that is down or cut
// off, and must not wait for it to write a split or a session's release.
// A server it did hear report an older version still holds it back (an
// old node brought back against the advice in docs/OPERATIONS.md).

// encode is e as this leader writes it to the log. An entry with no
// legacy form (a split) is refused until every server reads it. A group
// other than 0 is a range a split made, which every server of range 0
// read when it was made: it writes every kind in the typed form.
func (g *Group) encode(e *fsm.Entry) ([]byte, error) {
	v := e.Kind.MinVersion()
	if e.Kind == fsm.KindKV || g.cfg.ID != 0 || g.formats.mayWrite(g.Members(), g.id, v, g.fsm.LogVersion()) {
		return fsm.EncodeEntry(e), nil
	}
	if !e.Kind.HasLegacyForm() {
		if g.formats.unheard(g.Members(), g.id) {
			// A new leader hears every server within an autopilot round:
			// not applied, and retried until then (onLeader).
			return nil, fmt.Errorf("%w: a %s waits until every server has told this leader which entries it reads", kv.ErrNoLeader, e.Kind)
		}
		return nil, fmt.Errorf("%w: a %s needs every server on a release with ranges", kv.ErrNotImplemented, e.Kind)
	}
	return fsm.EncodeLegacyEntry(e), nil
}

// entryFormats is, on the leader, the newest entry form each server
// reported reading.
type entryFormats struct{ m sync.Map } // id → int

func (f *entryFormats) report(id string, version int) { f.m.Store(id, version) }

// allRead says whether every one of servers but self (which reads what it
// writes) reported reading version.
func (f *entryFormats) allRead(servers []string, self string, version int) bool {
	for _, id := range servers {
		if id == self {
			continue
		}
		v, ok := f.m.Load(id)
		if !ok || v.(int) < version {
			return false
		}
	}
	return true
}

// mayWrite says whether entries of version may go to the log: every
// server but self reported reading it, or the log already holds that
// version (logVersion) and no server reported reading less.
func (f *entryFormats) mayWrite(servers []string, self string, version, logVersion int) bool {
	if f.allRead(servers, self, version) {
		return true
	}
	if logVersion < version {
		return false
	}
	for _, id := range servers {
		if v, ok := f.m.Load(id); ok && id != self && v.(int) < version {
			return false
		}
	}
	return true
}

// unheard says whether one of servers but self has reported nothing yet.
func (f *entryFormats) unheard(servers []string, self string) bool {
	for _, id := range servers {
		if _, ok := f.m.Load(id); !ok && id != self {
			return true
		}
	}
	return false
}
