package ranges

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// StartFunc opens and starts the group of a range a split made (or that
// the node found in its store at start-up), on this node.
type StartFunc func(d rangemap.Descriptor) (*group.Group, error)

// Set is the ranges of one node.
type Set struct {
	meta   *group.Group
	start  StartFunc
	failed func(id uint64) // an adopted range did not start
	dir    string
	logger *slog.Logger

	mu       sync.Mutex
	groups   map[uint64]*group.Group
	starting map[uint64]bool
	samples  map[uint64][]sample // applied-entry counts, for write rates
	changed  chan struct{}       // closed and replaced when groups or spans change
	ctx      context.Context     // ends when the set closes
	cancel   context.CancelFunc
	closed   bool
	wg       sync.WaitGroup
}

// Config is what a node's set of ranges works with.
type Config struct {
	Meta  *group.Group // range 0
	Start StartFunc    // opens the groups of the other ranges
	// Failed hears of a range Adopt said it starts, that did not.
	Failed func(id uint64)
	// Dir holds the temporary files of restores.
	Dir    string
	Logger *slog.Logger
	// MembershipEvery is how often each range's leader mirrors range 0's
	// membership into its range (membership.go; default and least 1s).
	MembershipEvery time.Duration
}

// New returns the set of a node's ranges.
func New(cfg Config) *Set {
	s := &Set{meta: cfg.Meta, start: cfg.Start, failed: cfg.Failed, dir: cfg.Dir, logger: cfg.Logger, groups: map[uint64]*group.Group{}, starting: map[uint64]bool{},
		samples: map[uint64][]sample{}, changed: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.Add(cfg.Meta)
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.sampleRates(s.ctx.Done()) }()
	go func() { defer s.wg.Done(); s.releasePending(s.ctx) }()
	go func() { defer s.wg.Done(); s.mirrorMembership(s.ctx, cfg.MembershipEvery) }()
	return s
}

// Add makes a started group part of the set and hears its splits.
func (s *Set) Add(g *group.Group) {
	g.FSM().OnSplit(s.split)
	g.FSM().OnRestored(func() {
		s.mu.Lock()
		s.signal()
		s.mu.Unlock()
	})
	s.mu.Lock()
	s.groups[g.GroupID()] = g
	s.signal()
	s.mu.Unlock()
}

// split hears a split a local replica applied (on raft's FSM goroutine, so
// it must not block): the parent's span changed, and the new range's
// group starts.
func (s *Set) split(left, right rangemap.Descriptor) {
	s.mu.Lock()
	s.signal()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if parent := s.groups[left.ID]; parent != nil {
		parent.SnapshotSoon() // what a replica that lacks either half gets from now on
	}
	s.wg.Add(1) // under mu, before Close can wait
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := s.Ensure(right); err != nil {
			// The node cannot serve the range's keys until it restarts
			// (which opens every range in its store).
			s.logger.Error("cannot start the range a split made", "range", right.ID, "err", err)
			return
		}
		s.logger.Info("range started", "range", right.String(), "after split of", left.String())
	}()
}

// Ensure starts range d's group on this node unless it runs or is
// starting already. An empty d (rangemap.Descriptor.Empty) starts a
// replica that has not got the range's state yet.
func (s *Set) Ensure(d rangemap.Descriptor) error {
	s.mu.Lock()
	if s.closed || s.groups[d.ID] != nil || s.starting[d.ID] {
		s.mu.Unlock()
		return nil
	}
	s.starting[d.ID] = true
	s.mu.Unlock()
	g, err := s.start(d)
	s.mu.Lock()
	delete(s.starting, d.ID)
	closed := s.closed
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if closed {
		g.Close()
		return nil
	}
	s.Add(g)
	return nil
}

// maxUninitialized bounds the replicas raft traffic made that have not
// received their range's state yet.
const maxUninitialized = 16

// Adopt answers raft traffic for range id, which this node does not run:
// it starts an empty replica of it (a node that joined after the range
// was made, or that missed its split), which the range's leader sends a
// snapshot. It must not block: the start runs on its own.
func (s *Set) Adopt(id uint64) bool {
	s.mu.Lock()
	if id == 0 || s.closed || s.groups[id] != nil {
		s.mu.Unlock()
		return false
	}
	if s.starting[id] {
		s.mu.Unlock()
		return true
	}
	empty := len(s.starting)
	for _, g := range s.groups {
		if !g.FSM().Initialized() {
			empty++
		}
	}
	if empty >= maxUninitialized {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1) // under mu, before Close can wait
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := s.Ensure(rangemap.Descriptor{ID: id, Start: "\x00", End: "\x00"}); err != nil {
			s.logger.Warn("cannot start a replica of a range raft traffic asked for", "range", id, "err", err)
			if s.failed != nil {
				s.failed(id)
			}
			return
		}
		s.logger.Info("started a replica of a range this node did not hold; its leader sends the state", "range", id)
	}()
	return true
}

func (s *Set) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close stops the groups of every range but 0 (its owner closes it) and
// waits for the starts in flight; handOver hands their leaderships over
// first (a clean stop, not a crash).
func (s *Set) Close(handOver bool) {
	s.mu.Lock()
	s.cancel()
	s.closed = true
	var others []*group.Group
	for id, g := range s.groups {
		if id != 0 {
			others = append(others, g)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	for id, g := range s.groups {
		if id != 0 && !slices.Contains(others, g) {
			others = append(others, g)
		}
	}
	s.mu.Unlock()
	for _, g := range others {
		g.StepAside(handOver)
	}
	for _, g := range others {
		g.Close()
	}
}

// Groups returns the groups of the ranges other than 0.
func (s *Set) Groups() []*group.Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*group.Group
	for id, g := range s.groups {
		if id != 0 {
			out = append(out, g)
		}
	}
	return out
}

// local is a range this node holds: its group and its span as its replica
// has applied it.
type local struct {
	g *group.Group
	d rangemap.Descriptor
}

// view returns the local ranges in key order and the channel closed at
// the next change.
func (s *Set) view() ([]local, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]local, 0, len(s.groups))
	for _, g := range s.groups {
		if d := g.FSM().Descriptor(); !d.Empty() { // a replica without its range's state yet holds nothing
			out = append(out, local{g: g, d: d})
		}
	}
	slices.SortFunc(out, func(a, b local) int { return strings.Compare(a.d.Start, b.d.Start) })
	return out, s.changed
}

// ofKey finds the local range holding key.
func ofKey(v []local, key string) (local, bool) {
	for _, l := range v {
		if l.d.Contains(key) {
			return l, true
		}
	}
	return local{}, false
}

// ofPrefix finds the local ranges holding keys under prefix, in key
// order; complete says whether they cover all of it (a new range may not
// have started yet).
func ofPrefix(v []local, prefix string) (out []local, complete bool) {
	end := rangemap.PrefixEnd(prefix)
	want := prefix
	complete = true
	for _, l := range v {
		overlaps := (end == "" || l.d.Start < end) && (l.d.End == "" || prefix < l.d.End)
		if !overlaps {
			continue
		}
		if l.d.Start > want {
			complete = false
		}
		out = append(out, l)
		if l.d.End == "" {
			want = ""
			break
		}
		want = max(want, l.d.End)
	}
	if end == "" && (len(out) == 0 || out[len(out)-1].d.End != "") || end != "" && want != "" && want < end {
		complete = false
	}
	return out, complete && len(out) > 0
}

// retry runs attempt until it does not meet a range that moved: then it
// waits for this node's replicas to change (the split reaching them) or a
// short pause (the leader may be ahead of this node's replica), within ctx.
func (s *Set) retry(ctx context.Context, attempt func(v []local, changed <-chan struct{}) (bool, error)) error {
	pause := time.Millisecond
	for {
		v, changed := s.view()
		routed, err := attempt(v, changed)
		if routed && !errors.Is(err, kv.ErrRangeMoved) {
			return err
		}
		if known, since := s.meta.LeaderMeta(); !known && since >= s.meta.MaxLeaderless() {
			// No leader of range 0 for as long as a request waits for one:
			// this node is cut off from the majority, and answers at once,
			// as a range it holds would.
			if err == nil || errors.Is(err, kv.ErrRangeMoved) {
				err = fmt.Errorf("%w: this node hears from no leader and holds no range of the key that could answer", kv.ErrNoLeader)
			}
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = fmt.Errorf("%w: no range of this node holds the key yet", kv.ErrNoLeader)
			}
			return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		}
		t.Stop()
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// Route is the range holding key on this node and the address of its
// leader as this node knows it; false if no range of this node holds key
// or it knows no leader of it.
func (s *Set) Route(key string) (d rangemap.Descriptor, leader string, ok bool) {
	v, _ := s.view()
	l, ok := ofKey(v, key)
	if !ok {
		return d, "", false
	}
	leader, _ = l.g.Leader()
	return l.d, leader, leader != ""
}

// Split cuts the range holding key at key (see rangemap.CheckSplitKey):
// range 0 hands out the new range's ID, the parent range applies the
// split in its own log, and the call returns once this node runs the new
// range.
func (s *Set) Split(ctx context.Context, key string) (left, right rangemap.Descriptor, err error) {
	v, _ := s.view()
	parent, ok := ofKey(v, key)
	if !ok {
		return left, right, fmt.Errorf("%w: no range of this node holds %q yet", kv.ErrNoLeader, key)
	}
	if err := rangemap.CheckSplitKey(parent.d, key, nil); err != nil {
		return left, right, fmt.Errorf("%w: %v", kv.ErrInvalid, err)
	}
	conf, err := parent.g.Membership().Configuration(ctx)
	if err != nil {
		return left, right, err
	}
	var replicas []rangemap.Replica
	for _, srv := range conf.Servers {
		replicas = append(replicas, rangemap.Replica{Node: srv.ID, Voter: srv.Voter})
	}
	// Both entries carry an idempotency key: one sent to a leader that
	// changed or went silent is sent again (group.Propose), and if the
	// first went through, its result comes back instead of a second ID or
	// a refusal of a boundary that is already there.
	call := "raftkv-split/" + uuid.NewString()
	idEntry := fsm.NewRangeIDEntry()
	idEntry.IdempotencyKey = call + "/id"
	idRes, err := s.meta.Propose(ctx, idEntry)
	if err != nil {
		return left, right, fmt.Errorf("ranges: a new range ID: %w", err)
	}
	splitEntry := fsm.SplitEntry(fsm.Split{Key: key, NewID: idRes.Index, Replicas: replicas})
	splitEntry.IdempotencyKey = call
	res, err := parent.g.Propose(ctx, splitEntry)
	if err != nil {
		return left, right, fmt.Errorf("ranges: split %s at %q: %w", parent.d, key, err)
	}
	// The split is applied on the parent's leader: wait for this node's
	// replica and the new range's group.
	for {
		v, changed := s.view()
		for _, l := range v {
			if l.d.ID == idRes.Index {
				p, _ := ofKey(v, parent.d.Start)
				if parent.d.Start == "" {
					p, _ = ofKey(v, "")
				}
				return p.d, l.d, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return left, right, fmt.Errorf("ranges: split applied at index %d, but this node has not started range %d yet: %w", res.Index, idRes.Index, ctx.Err())
		}
	}
}

// KeepWhole keeps prefix in one range from now on (a split never cuts
// inside it), or, keep false, lets it go. Refused if a range boundary
// already falls inside it.
func (s *Set) KeepWhole(ctx context.Context, prefix string, keep bool) error {
	return s.retry(ctx, func(v []local, _ <-chan struct{}) (bool, error) {
		l, ok := ofKey(v, prefix)
		if !ok {
			return false, nil
		}
		_, err := l.g.Propose(ctx, fsm.KeepWholeEntry(prefix, keep))
		return true, err
	})
}
