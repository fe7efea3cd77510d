package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// A lock holder must stop before anyone else can take what it holds. The
// cluster promises that nothing but a destroy invalidates a session before
// its Lease (kv.Session.Lease: the TTL) has passed since a renew reached
// the leader, whichever node it went through and whatever the session's
// node health. The holder counts the same Lease from when it sent its last
// renew that succeeded (which is before the leader saw it), on its own
// clock, and gives up a margin sooner: that covers clock rates that differ
// a little and a process that is scheduled late. lock-delay, when set, only
// widens the gap.

// DefaultMargin is how long before the cluster could invalidate a session
// of lease its holder gives it up when LockOptions.Margin is zero: 2% of
// the lease (clock rates) plus 100ms (scheduling).
func DefaultMargin(lease time.Duration) time.Duration {
	return lease/50 + 100*time.Millisecond
}

// heldSession is the session a lock or semaphore is held with.
type heldSession struct {
	id     string
	own    bool          // made for the lock: destroyed with it
	lease  time.Duration // kv.Session.Lease; 0: only a destroy ends it
	margin time.Duration
	lastOK time.Time // when the create, or the last renew that succeeded, was sent
}

// deadline is when the holder must take the session as lost.
func (h *heldSession) deadline() time.Time { return h.lastOK.Add(h.lease - h.margin) }

// holdSession creates the session a lock is held with (name, behavior,
// opts.TTL, opts.LockDelay), or takes opts.Session: that one is renewed
// once now, so that its holder knows from when to count its Lease.
func (c *Client) holdSession(ctx context.Context, opts LockOptions, name, behavior string) (*heldSession, error) {
	h := &heldSession{id: opts.Session, margin: opts.Margin}
	if h.id != "" {
		h.lastOK = time.Now()
		s, err := c.RenewSession(ctx, h.id)
		if errors.Is(err, kv.ErrNotFound) {
			return nil, fmt.Errorf("%w: invalid session %q", kv.ErrSession, h.id)
		}
		if err != nil {
			return nil, fmt.Errorf("renew session %s: %w", h.id, err)
		}
		h.lease = s.Lease()
		return h, h.checkMargin()
	}
	h.lease = opts.TTL
	if h.lease == 0 {
		h.lease = 15 * time.Second
	}
	if err := h.checkMargin(); err != nil {
		return nil, err
	}
	h.lastOK = time.Now()
	id, err := c.CreateSession(ctx, SessionOptions{Name: name, TTL: h.lease, LockDelay: opts.LockDelay, Behavior: behavior})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	h.id, h.own = id, true
	return h, nil
}

// checkMargin sets the default margin, and refuses one that leaves nothing
// of the lease.
func (h *heldSession) checkMargin() error {
	if h.margin <= 0 {
		h.margin = DefaultMargin(h.lease)
	}
	if h.lease > 0 && h.margin >= h.lease {
		return fmt.Errorf("%w: a margin of %s leaves nothing of a %s lease", kv.ErrInvalid, h.margin, h.lease)
	}
	return nil
}

// keepAlive renews the session every lease/2 (more often after a failure)
// until stop closes (false) or the session must be taken as lost (true):
// the cluster invalidated it, or the deadline passed without a renew that
// succeeded (the holder is cut off from the cluster, which may invalidate
// the session from lastOK + lease on).
func (c *Client) keepAlive(h *heldSession, stop <-chan struct{}) bool {
	if h.lease <= 0 {
		<-stop // nothing ends the session but a destroy: the key is watched
		return false
	}
	retry := min(time.Second, h.lease/10)
	wait := h.lease / 2
	for {
		t := time.NewTimer(min(wait, time.Until(h.deadline())))
		select {
		case <-stop:
			t.Stop()
			return false
		case <-t.C:
		}
		if !time.Now().Before(h.deadline()) {
			return true
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), h.deadline())
		// A node that does not answer within a quarter of the lease is
		// left for the next: with short TTLs (1s) a renew stuck on a node
		// cut off would otherwise outlast the holder's deadline.
		_, err := c.renewSession(ctx, h.id, max(h.lease/4, 100*time.Millisecond))
		cancel()
		switch {
		case err == nil:
			h.lastOK, wait = sent, h.lease/2
		case errors.Is(err, kv.ErrNotFound):
			return true // invalidated
		default:
			wait = retry
		}
	}
}
