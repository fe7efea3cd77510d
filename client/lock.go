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
	// if the leader changed meanwhile); Lost closes after TTL.
	TTL time.Duration
	// LockDelay after the holder's session is invalidated, during which no
	// one else may take the lock (default 15s): time for a holder that does
	// not know yet to notice and stop.
	LockDelay time.Duration
	// Session, if set, is an existing session to hold the lock with; it is
	// then neither renewed nor destroyed by the lock.
	Session string
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
	c       *Client
	key     string
	value   []byte
	flags   uint64
	session string
	own     bool // the lock made its session: it renews and destroys it
	index   uint64

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// Lock blocks until the lock on key is held, or ctx ends.
func (c *Client) Lock(ctx context.Context, key string, opts LockOptions) (*Lock, error) {
	l := &Lock{c: c, key: key, value: opts.Value, flags: opts.Flags, session: opts.Session, lost: make(chan struct{}), stop: make(chan struct{})}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = 15 * time.Second
	}
	if l.session == "" {
		sent := time.Now()
		id, err := c.CreateSession(ctx, SessionOptions{Name: "raftkv lock " + key, TTL: ttl, LockDelay: opts.LockDelay})
		if err != nil {
			return nil, fmt.Errorf("lock %q: create session: %w", key, err)
		}
		l.session, l.own = id, true
		l.wg.Add(1)
		go l.renew(sent, ttl)
	}
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
		e, ok, err := l.c.lockTxn(ctx, "lock", l.key, l.value, l.flags, l.session)
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

// renewSession keeps a session alive, every TTL/2 (every second after a
// failure), until stop closes (false) or the session must be taken as lost
// (true). A holder cut off from the cluster gives up once TTL has passed
// since the last renew that succeeded (lastOK: when it, or the create, was
// sent): the cluster cannot invalidate the session before TTL after it
// reached the leader, so the holder stops before anyone else can take what
// it holds (lock-delay adds to that margin).
func renewSession(c *Client, id string, lastOK time.Time, ttl time.Duration, stop <-chan struct{}) bool {
	wait := ttl / 2
	for {
		t := time.NewTimer(min(wait, time.Until(lastOK.Add(ttl))))
		select {
		case <-stop:
			t.Stop()
			return false
		case <-t.C:
		}
		if time.Since(lastOK) >= ttl {
			return true
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), max(time.Until(lastOK.Add(ttl)), time.Millisecond))
		_, err := c.RenewSession(ctx, id)
		cancel()
		switch {
		case err == nil:
			lastOK, wait = sent, ttl/2
		case errors.Is(err, kv.ErrNotFound):
			return true // invalidated
		default:
			wait = time.Second
		}
	}
}

// renew runs renewSession for the lock's own session.
func (l *Lock) renew(created time.Time, ttl time.Duration) {
	defer l.wg.Done()
	if renewSession(l.c, l.session, created, ttl, l.stop) {
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
		case errors.Is(err, kv.ErrNotFound), err == nil && e.Session != l.session:
			l.markLost()
			return
		case err != nil:
			select { // unreachable: renew gives the lock up once TTL has passed
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
// deleted, or the session was invalidated). Stop the work it guards.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Index is the key's LockIndex when the lock was taken: with Key, a
// fencing token that no later holder shares.
func (l *Lock) Index() uint64 { return l.index }

// Key is the lock's key; Session the session holding it.
func (l *Lock) Key() string     { return l.key }
func (l *Lock) Session() string { return l.session }

// Unlock releases the lock (and destroys its session, if the lock made
// it). After Unlock, Lost is closed.
func (l *Lock) Unlock(ctx context.Context) error {
	_, _, err := l.c.lockTxn(ctx, "unlock", l.key, l.value, l.flags, l.session)
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
	if l.own {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = l.c.DestroySession(ctx, l.session)
		cancel()
	}
}
