package ranges

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The router: the keyspace as one store (the HTTP API's KVStore).

// tree says whether op names a prefix rather than a key.
func tree(op kv.Op) bool { return op.Verb == kv.VerbGetTree || op.Verb == kv.VerbDeleteTree }

// placeOps finds the one range every op of c falls in. A command whose ops
// fall in several ranges gets a refusal naming the first op outside the
// first op's range (routed false: no range of this node holds a key yet).
func placeOps(v []local, c *kv.Command) (at local, refusal *kv.Result, routed bool) {
	for i, op := range c.Ops {
		var here []local
		if tree(op) {
			var complete bool
			if here, complete = ofPrefix(v, op.Key); !complete {
				return local{}, nil, false
			}
		} else {
			l, ok := ofKey(v, op.Key)
			if !ok {
				return local{}, nil, false
			}
			here = []local{l}
		}
		if i == 0 && len(here) == 1 {
			at = here[0]
			continue
		}
		if len(here) > 1 || here[0].d.ID != at.d.ID {
			other := here[0]
			if other.d.ID == at.d.ID {
				other = here[1]
			}
			first := at
			if i == 0 {
				first = here[0]
			}
			return local{}, &kv.Result{Errors: []kv.OpError{{OpIndex: i, What: fmt.Sprintf(
				"txn spans ranges %d and %d: %q is in range %d [%q, %q), a transaction runs within one range (keep its prefix whole)",
				first.d.ID, other.d.ID, op.Key, other.d.ID, other.d.Start, other.d.End)}}}, true
		}
	}
	return at, nil, true
}

// Apply runs a write command on the range its keys are in. A delete-tree
// alone over several ranges runs in each of them, one after the other (it
// is not atomic across ranges); any other command over several ranges is
// refused.
func (s *Set) Apply(ctx context.Context, cmd *kv.Command) (res *kv.Result, err error) {
	if len(cmd.Ops) == 1 && cmd.Ops[0].Verb == kv.VerbDeleteTree {
		return s.deleteTree(ctx, cmd)
	}
	err = s.retry(ctx, func(v []local, _ <-chan struct{}) (bool, error) {
		at, refusal, routed := placeOps(v, cmd)
		if refusal != nil {
			res = refusal
			return true, nil
		}
		if !routed || !slices.Contains(at.g.Members(), at.g.ID()) {
			// No replica here, or one its range has not taken in yet (a
			// node that joined after the split, until the range's leader
			// adds it): it would hear from no leader.
			var elsewhere bool
			res, elsewhere, err = s.applyElsewhere(ctx, cmd)
			return elsewhere, err
		}
		if res, err = s.checkSessions(ctx, at, cmd); res != nil || err != nil {
			return true, err
		}
		res, err = at.g.Apply(ctx, cmd)
		return true, err
	})
	return res, err
}

func (s *Set) deleteTree(ctx context.Context, cmd *kv.Command) (res *kv.Result, err error) {
	err = s.retry(ctx, func(v []local, _ <-chan struct{}) (bool, error) {
		here, complete := ofPrefix(v, cmd.Ops[0].Key)
		if !complete {
			return false, nil
		}
		res = &kv.Result{OK: true}
		for _, l := range here {
			r, err := l.g.Apply(ctx, cmd)
			if err != nil {
				return true, err
			}
			res.Index = max(res.Index, r.Index)
			res.OK = res.OK && r.OK
			res.Errors = append(res.Errors, r.Errors...)
		}
		return true, nil
	})
	return res, err
}

// ReadTxn evaluates a read-only command in the range its keys are in.
func (s *Set) ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (res *kv.Result, err error) {
	err = s.retry(ctx, func(v []local, _ <-chan struct{}) (bool, error) {
		at, refusal, routed := placeOps(v, cmd)
		if refusal != nil {
			res = refusal
			return true, nil
		}
		if !routed {
			return false, nil
		}
		res, err = at.g.ReadTxn(ctx, cmd, stale)
		return true, err
	})
	return res, err
}

// Read answers a query from the range of its key, or, for a listing, from
// every range under its prefix, read at one index and merged in key order
// (closed.go). A blocking listing over several ranges waits in each and
// answers when any has a change. A blocking query follows the range map:
// when a split moves its keys while it waits, it waits on in the ranges
// that hold them now (a write there must wake it), for what is left of its
// wait.
func (s *Set) Read(ctx context.Context, q kv.Query) (res *kv.QueryResult, err error) {
	var deadline time.Time
	if q.MinIndex > 0 {
		wait := q.Wait
		if wait <= 0 {
			wait = kv.DefaultWait
		}
		deadline = time.Now().Add(min(wait, kv.MaxWait))
	}
	err = s.retry(ctx, func(v []local, changed <-chan struct{}) (bool, error) {
		if q.MinIndex == 0 {
			var routed bool
			routed, res, err = s.readIn(ctx, v, q)
			return routed, err
		}
		attempt, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-changed:
				cancel(errMapChanged)
			case <-attempt.Done():
			}
		}()
		routed, r, err := s.readIn(attempt, v, q)
		if errors.Is(context.Cause(attempt), errMapChanged) && ctx.Err() == nil {
			// Routed again at once (changed is closed), for what is left
			// of the wait.
			if q.Wait = time.Until(deadline); q.Wait <= 0 {
				q.MinIndex, q.Wait = 0, 0 // the wait is over: answer as it is
			}
			return false, nil
		}
		res = r
		return routed, err
	})
	return res, err
}

// errMapChanged ends a blocking query's wait in the ranges it was routed
// to: the map changed, and it is routed again.
var errMapChanged = errors.New("the range map changed")

// readIn is one attempt of Read on the ranges of view v; routed is false
// if no range of v holds the key (or all of the prefix) yet.
func (s *Set) readIn(ctx context.Context, v []local, q kv.Query) (routed bool, res *kv.QueryResult, err error) {
	if q.Kind == kv.ReadGet {
		l, ok := ofKey(v, q.Key)
		if !ok {
			return false, nil, nil
		}
		res, err = l.g.Read(ctx, q)
		return true, res, err
	}
	here, complete := ofPrefix(v, q.Key)
	if !complete {
		return false, nil, nil
	}
	if len(here) == 1 {
		res, err = here[0].g.Read(ctx, q)
		return true, res, err
	}
	if q.MinIndex > 0 {
		if err := waitAny(ctx, here, q); err != nil {
			return true, nil, err
		}
		q.MinIndex = 0
	}
	res, err = closedRead(ctx, here, q, time.Now)
	if err != nil && q.Stale && errors.Is(err, kv.ErrNoLeader) {
		// A stale read asks for no leader: without one to close the
		// ranges, each range's own state, merged.
		res, err = readAll(ctx, here, q)
	}
	return true, res, err
}

// waitAny runs the blocking query in every range and returns when the
// first of them answers.
func waitAny(ctx context.Context, here []local, q kv.Query) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, len(here))
	for _, l := range here {
		go func() {
			_, err := l.g.Read(ctx, q)
			done <- err
		}()
	}
	err := <-done
	cancel()
	for range len(here) - 1 {
		<-done
	}
	return err
}

// readAll reads a listing from each range and merges the answers.
func readAll(ctx context.Context, here []local, q kv.Query) (*kv.QueryResult, error) {
	parts := make([]*kv.QueryResult, len(here))
	errs := make([]error, len(here))
	var wg sync.WaitGroup
	for i, l := range here {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = l.g.Read(ctx, q)
		}()
	}
	wg.Wait()
	out := &kv.QueryResult{KnownLeader: true, Stale: q.Stale}
	for i, p := range parts {
		if errs[i] != nil {
			return nil, errs[i]
		}
		merge(out, p)
	}
	return out, nil
}
