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
// it. The read takes every range as it was at one index T (fsm.View): its
// replica on this node captures the range right before the first entry
// whose index is past T; then a close at T (fsm.Close: no later write at
// or below T) makes sure every range gets there, idle or not. Together,
// every write at or below T and nothing after.
//
// Real-time order: T is a few milliseconds ahead of this node's clock, and
// the closes are proposed only once the clock has passed T. A write that
// finished before another began is then ordered alike: if the later one
// is at or below T it began before T's time, so the earlier one finished
// before any close was proposed and is at or below T too (for nodes whose
// clocks agree to within those milliseconds). A range whose writes are
// already past T (a leader's clock further ahead, over 1,024 writes in a
// millisecond) gives no view at T: the read starts again later.

// closeRounds bounds the attempts of one read; maxAhead how far ahead of
// this node's clock a range's index may be for the read to wait for it;
// closeAhead how far ahead of the clock a read takes its index.
const (
	closeRounds = 8
	maxAhead    = time.Second
	closeAhead  = 2 * time.Millisecond
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

// closeViews returns the ranges here as they were at one index, and the
// index (discard the views).
func closeViews(ctx context.Context, here []local, now func() time.Time) ([]*fsm.View, uint64, error) {
	var floor uint64
	for round := 0; ; round++ {
		if round == closeRounds {
			return nil, 0, fmt.Errorf("%w: ranges kept writing past the read's index for %d rounds", kv.ErrNoLeader, closeRounds)
		}
		if ahead := fsm.IndexTime(floor).Sub(now()); ahead > maxAhead {
			return nil, 0, fmt.Errorf("%w: a range's index is %v ahead of this node's clock", kv.ErrNoLeader, ahead.Round(time.Millisecond))
		}
		at := max(fsm.ClockIndex(now().Add(closeAhead)), floor+1)
		views, passed, err := viewsAt(ctx, here, at, now)
		if err != nil || views != nil {
			return views, at, err
		}
		floor = max(passed, at)
	}
}

// viewsAt takes the views of the ranges at index at: registered now,
// closed once this node's clock has passed at. If a range was past at
// already, no views and its last index.
func viewsAt(ctx context.Context, here []local, at uint64, now func() time.Time) ([]*fsm.View, uint64, error) {
	chans := make([]<-chan *fsm.View, len(here))
	for i, l := range here {
		ch, cancel := l.g.FSM().AwaitAt(at)
		defer cancel()
		chans[i] = ch
	}
	t := time.NewTimer(fsm.IndexTime(at).Add(time.Millisecond).Sub(now())) // past at's millisecond
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return nil, 0, ctx.Err()
	}
	errs := make([]error, len(here))
	var wg sync.WaitGroup
	for i, l := range here {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.g.CloseAt(ctx, at); err != nil {
				errs[i] = fmt.Errorf("close range %d: %w", l.d.ID, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	views := make([]*fsm.View, len(here))
	var passed uint64
	for i, ch := range chans {
		select {
		case v := <-ch:
			if v == nil {
				passed = max(passed, here[i].g.FSM().LastIndex())
			}
			views[i] = v
		case <-ctx.Done():
			for _, v := range views {
				if v != nil {
					v.Discard()
				}
			}
			return nil, 0, fmt.Errorf("%w: waiting for this node's replica of range %d: %v", kv.ErrNoLeader, here[i].d.ID, context.Cause(ctx))
		}
	}
	if passed > 0 {
		for _, v := range views {
			if v != nil {
				v.Discard()
			}
		}
		return nil, passed, nil
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
