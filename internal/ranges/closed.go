package ranges

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// Reads across ranges. Each range counts its own indexes, so a listing
// over ranges A and B answered with index X (the largest it saw) must
// both see every write of A and B at or below X and leave every later
// write of A and B above X, or a blocking query holding X sleeps through
// it. The read closes every range at one index T (fsm.Close: no later
// write of the range at or below T) and reads each range exactly at its
// close (fsm.View): together, every write at or below T and nothing after.
//
// T is a few milliseconds ahead of this node's clock (closeAhead), so
// that the writes a busy range takes while the close is on its way still
// fall at or below T and the close is accepted (a T in the past would be
// overtaken by every write stamped since, and the read would never end
// under load). The price: writes to different ranges within those
// milliseconds of the read may be seen in another order than real time
// (docs/API.md says so); the index promise does not depend on it. A range
// whose writes are already past T (a leader's clock further ahead, or
// over 1,024 writes in a millisecond) refuses the close with its floor:
// the read waits until this node's clock passes that floor and closes
// every range again.

// closeRounds bounds the rounds of closes one read makes; maxAhead how far
// ahead of this node's clock a range's floor may be for the read to wait
// for it.
const (
	closeRounds = 8
	maxAhead    = time.Second
	closeAhead  = 4 * time.Millisecond
)

// closedRead answers q over the ranges here as one state.
func closedRead(ctx context.Context, here []local, q kv.Query, now func() time.Time) (*kv.QueryResult, error) {
	views, _, err := closeViews(ctx, here, now)
	if err != nil {
		return nil, err
	}
	res, err := readViews(views, q)
	for _, v := range views {
		v.Discard()
	}
	return res, err
}

// closeViews closes the ranges here at one index and returns it and
// their views (discard them).
func closeViews(ctx context.Context, here []local, now func() time.Time) ([]*fsm.View, uint64, error) {
	at := fsm.ClockIndex(now().Add(closeAhead))
	for round := 0; ; round++ {
		views, floor, err := closeAll(ctx, here, at)
		if err != nil {
			return nil, 0, err
		}
		if views != nil {
			return views, at, nil
		}
		if round == closeRounds {
			return nil, 0, fmt.Errorf("%w: ranges kept writing past the read's index for %d rounds", kv.ErrNoLeader, closeRounds)
		}
		// A range is ahead of this node's clock: wait for the clock.
		ahead := fsm.IndexTime(floor).Sub(now())
		if ahead > maxAhead {
			return nil, 0, fmt.Errorf("%w: a range's index is %v ahead of this node's clock", kv.ErrNoLeader, ahead.Round(time.Millisecond))
		}
		t := time.NewTimer(max(ahead, 0) + time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, 0, ctx.Err()
		}
		at = max(fsm.ClockIndex(now().Add(closeAhead)), floor)
	}
}

// closeAll closes every range at index at and returns their views; if a
// range refused, no views and the highest floor met.
func closeAll(ctx context.Context, here []local, at uint64) ([]*fsm.View, uint64, error) {
	views := make([]*fsm.View, len(here))
	floors := make([]uint64, len(here))
	errs := make([]error, len(here))
	var wg sync.WaitGroup
	for i, l := range here {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, v, err := l.g.CloseAt(ctx, at)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("close range %d: %w", l.d.ID, err)
			case v == nil:
				floors[i] = max(res.Index, 1) // refused: a floor of 0 (a range counting raft indexes) still refuses
			default:
				views[i] = v
			}
		}()
	}
	wg.Wait()
	var floor uint64
	var failed error
	for i := range here {
		floor = max(floor, floors[i])
		if failed == nil {
			failed = errs[i]
		}
	}
	if failed != nil || floor > 0 {
		for _, v := range views {
			if v != nil {
				v.Discard()
			}
		}
		return nil, floor, failed
	}
	return views, 0, nil
}

// readViews answers q from each view and merges the answers in key order.
func readViews(views []*fsm.View, q kv.Query) (*kv.QueryResult, error) {
	out := &kv.QueryResult{KnownLeader: true, Stale: q.Stale}
	for _, v := range views {
		p, err := v.Read(q)
		if err != nil {
			return nil, err
		}
		merge(out, p)
	}
	return out, nil
}

// merge appends a range's answer to the answers of the ranges before it.
func merge(out, p *kv.QueryResult) {
	out.Entries = append(out.Entries, p.Entries...)
	for _, k := range p.Keys {
		// A rolled-up prefix ("a/b/") can end in one range and go on in
		// the next.
		if n := len(out.Keys); n == 0 || out.Keys[n-1] != k {
			out.Keys = append(out.Keys, k)
		}
	}
	out.Index = max(out.Index, p.Index)
	out.KnownLeader = out.KnownLeader && p.KnownLeader
	out.LastContact = max(out.LastContact, p.LastContact)
}
