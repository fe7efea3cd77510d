package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Election is leader election on one key: the leader is whoever holds the
// key's lock, and its value is the key's value (an address, a name).
type Election struct {
	c    *Client
	key  string
	lock *Lock
}

// Election returns the election held on key.
func (c *Client) Election(key string) *Election { return &Election{c: c, key: key} }

// Campaign blocks until this caller leads (its value written to the key),
// or ctx ends. Watch Lost: leadership can end without Resign.
func (e *Election) Campaign(ctx context.Context, value []byte, opts LockOptions) error {
	if e.lock != nil {
		return errors.New("election: already campaigned")
	}
	opts.Value = value
	l, err := e.c.Lock(ctx, e.key, opts)
	if err != nil {
		return fmt.Errorf("election %q: %w", e.key, err)
	}
	e.lock = l
	return nil
}

// Lost is closed when this caller stops leading. Nil before Campaign.
func (e *Election) Lost() <-chan struct{} {
	if e.lock == nil {
		return nil
	}
	return e.lock.Lost()
}

// Term is the leader's fencing token: the key's LockIndex when this
// caller was elected.
func (e *Election) Term() uint64 {
	if e.lock == nil {
		return 0
	}
	return e.lock.Index()
}

// Resign gives up leadership.
func (e *Election) Resign(ctx context.Context) error {
	if e.lock == nil {
		return nil
	}
	err := e.lock.Unlock(ctx)
	e.lock = nil
	return err
}

// Leader returns the current leader's value; ok is false with no leader.
func (e *Election) Leader(ctx context.Context) (value []byte, ok bool, err error) {
	v, ok, _, err := e.leader(ctx, 0)
	return v, ok, err
}

func (e *Election) leader(ctx context.Context, index uint64) ([]byte, bool, uint64, error) {
	ent, meta, err := e.c.Get(ctx, e.key, WaitIndex(index, 0))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, false, meta.Index, nil
	}
	if err != nil {
		return nil, false, 0, err
	}
	if ent.Session == "" {
		return nil, false, meta.Index, nil
	}
	return ent.Value, true, meta.Index, nil
}

// Observation is one state of the election.
type Observation struct {
	Leader bool   // someone leads
	Value  []byte // the leader's value
}

// Observe sends the election's state now and after every change, until
// ctx ends (then the channel is closed).
func (e *Election) Observe(ctx context.Context) <-chan Observation {
	ch := make(chan Observation, 1)
	go func() {
		defer close(ch)
		var index uint64
		var last *Observation
		for ctx.Err() == nil {
			v, ok, idx, err := e.leader(ctx, index)
			if err != nil {
				select { // the client already retried over its endpoints
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			index = idx
			o := Observation{Leader: ok, Value: v}
			if last != nil && last.Leader == o.Leader && string(last.Value) == string(o.Value) {
				continue
			}
			last = &o
			select {
			case ch <- o:
			case <-ctx.Done():
			}
		}
	}()
	return ch
}
