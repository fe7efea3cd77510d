package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// LockOptions tune Lock.
type LockOptions struct {
	// Value is written to the key while it is held.
	Value []byte
	// TTL of the lock's session (default 15s): a holder that stops renewing
	// loses the lock between TTL and 2×TTL later (TTL after an election,
	// if the leader changed meanwhile); Lost closes Margin before TTL has
	// passed since the last renew that succeeded was sent.
	TTL time.Duration
	// LockDelay after the holder's session is invalidated, during which no
	// one else may take the lock (default 15s; negative: none). As in
	// Consul, a value below 1µs is taken as seconds.
	LockDelay time.Duration
	// Session, if set, is an existing session to hold the lock with; it is
	// then not destroyed by the lock, but renewed while the lock is held
	// (so that the holder knows until when it is safe: see Lost).
	Session string
	// Margin is how long before the cluster could invalidate the session
	// (its Lease after the last renew that succeeded) Lost closes; default
	// DefaultMargin. Work that takes time to stop (raftkv lock's command)
	// needs that time added.
	Margin time.Duration
	// Flags stored with the key (consul lock and consul/api use
	// LockFlagValue, so that a lock key is not mistaken for something else).
	Flags uint64
}

// LockFlagValue is the Flags consul/api's locks (and consul lock) put on
// their key; raftkv lock uses it too, so that both can share a lock.
const LockFlagValue uint64 = 0x2ddccbc058a50c18

// Lock is a held distributed lock: a key whose lock a session holds.
// Work done under it should be fenced with Index: a write guarded by a
// check-session transaction op, or stamped with (Key, Index), can never
// land after the lock was lost.
type Lock struct {
	c     *Client
	key   string
	value []byte
	flags uint64
	held  *heldSession // the session it is held with
	index uint64

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// Lock blocks until the lock on key is held, or ctx ends.
func (c *Client) Lock(ctx context.Context, key string, opts LockOptions) (*Lock, error) {
	l := &Lock{c: c, key: key, value: opts.Value, flags: opts.Flags, lost: make(chan struct{}), stop: make(chan struct{})}
	held, err := c.holdSession(ctx, opts, "raftkv lock "+key, kv.BehaviorRelease)
	if err != nil {
		return nil, fmt.Errorf("lock %q: %w", key, err)
	}
	l.held = held
	l.wg.Add(1)
	go l.renew()
	if err := l.acquire(ctx); err != nil {
		l.shutdown()
		return nil, err
	}
	l.wg.Add(1)
	go l.monitor()
	return l, nil
}

// acquire tries the lock, and while someone else holds it (or it is under
// lock-delay) waits for the key to change.
func (l *Lock) acquire(ctx context.Context) error {
	for {
		e, ok, err := l.c.lockTxn(ctx, "lock", l.key, l.value, l.flags, l.held.id)
		if err != nil {
			return fmt.Errorf("lock %q: %w", l.key, err)
		}
		if ok {
			l.index = e.LockIndex
			return nil
		}
		cur, meta, err := l.c.Get(ctx, l.key)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			cur = kv.Entry{}
		case err != nil:
			return fmt.Errorf("lock %q: %w", l.key, err)
		}
		if cur.Session == "" {
			// Free but refused: lock-delay. Try again in a while, or as
			// soon as the key changes.
			waitCtx, cancel := context.WithTimeout(ctx, time.Second)
			_, _, err = l.c.Get(waitCtx, l.key, WaitIndex(meta.Index, time.Second))
			cancel()
		} else {
			_, _, err = l.c.Get(ctx, l.key, WaitIndex(meta.Index, 0))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("lock %q: %w", l.key, ctx.Err())
		}
		if err != nil && !errors.Is(err, kv.ErrNotFound) && !errors.Is(err, context.DeadlineExceeded) {
			select { // a failed blocking query: do not spin on it
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// renew keeps the lock's session alive until the lock is released, or
// marks the lock lost.
func (l *Lock) renew() {
	defer l.wg.Done()
	if l.c.keepAlive(l.held, l.stop) {
		l.markLost()
	}
}

// monitor watches the key: the lock is lost when the key is deleted or
// another session (or none) holds it.
func (l *Lock) monitor() {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-l.lost:
			cancel()
		}
	}()
	var index uint64
	for {
		e, meta, err := l.c.Get(ctx, l.key, WaitIndex(index, 0))
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, kv.ErrNotFound), err == nil && e.Session != l.held.id:
			l.markLost()
			return
		case err != nil:
			select { // no leader, or unreachable: renew gives the lock up at its deadline
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		index = meta.Index
	}
}

func (l *Lock) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// Lost is closed when the lock is lost (the key changed hands or was
// deleted, or the session was invalidated), or when the holder could not
// renew its session for its Lease less Margin: before the cluster may
// invalidate the session and let anyone else take the lock. Stop the work
// it guards.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Index is the key's LockIndex when the lock was taken: with Key, a
// fencing token that no later holder shares.
func (l *Lock) Index() uint64 { return l.index }

// Key is the lock's key; Session the session holding it.
func (l *Lock) Key() string     { return l.key }
func (l *Lock) Session() string { return l.held.id }

// Unlock releases the lock (and destroys its session, if the lock made
// it). After Unlock, Lost is closed.
func (l *Lock) Unlock(ctx context.Context) error {
	_, _, err := l.c.lockTxn(ctx, "unlock", l.key, l.value, l.flags, l.held.id)
	l.shutdown()
	if err != nil {
		return fmt.Errorf("unlock %q: %w", l.key, err)
	}
	return nil
}

// shutdown stops the goroutines and destroys an own session.
func (l *Lock) shutdown() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.markLost()
	if l.held.own {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = l.c.DestroySession(ctx, l.held.id)
		cancel()
	}
}
