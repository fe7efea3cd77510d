package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// A semaphore lets up to Limit holders in at once. The layout is Consul's
// (consul/api's SemaphorePrefix, consul lock -n), so both can share one:
// each contender holds <prefix>/<session> with its own delete-session, and
// <prefix>/.lock holds {"Limit":n,"Holders":{"<session>":true}}, changed
// only by check-and-set. A holder whose contender key is gone (its session
// was invalidated) no longer counts.

// SemaphoreFlagValue is the Flags Consul's semaphores put on their keys.
const SemaphoreFlagValue uint64 = 0xe0f69a2baa414de0

type semaphoreLock struct {
	Limit   int
	Holders map[string]bool
}

// Semaphore is a held slot of a semaphore.
type Semaphore struct {
	c       *Client
	prefix  string
	limit   int
	session string

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// Semaphore blocks until one of limit slots under prefix is held, or ctx
// ends. opts are those of a lock (Value goes into the contender key).
func (c *Client) Semaphore(ctx context.Context, prefix string, limit int, opts LockOptions) (*Semaphore, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: semaphore limit must be positive", kv.ErrInvalid)
	}
	opts.Session = "" // a semaphore's session must delete its contender key
	held, err := c.holdSession(ctx, opts, "raftkv semaphore "+prefix, kv.BehaviorDelete)
	if err != nil {
		return nil, fmt.Errorf("semaphore %q: %w", prefix, err)
	}
	id := held.id
	s := &Semaphore{c: c, prefix: prefix, limit: limit, session: id, lost: make(chan struct{}), stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if c.keepAlive(held, s.stop) {
			s.markLost()
		}
	}()
	if _, ok, err := c.lockTxn(ctx, "lock", s.contenderKey(), opts.Value, SemaphoreFlagValue, id); err != nil || !ok {
		s.shutdown()
		return nil, fmt.Errorf("semaphore %q: contender key: %v", prefix, err)
	}
	if err := s.acquire(ctx); err != nil {
		s.shutdown()
		return nil, err
	}
	s.wg.Add(1)
	go s.monitor()
	return s, nil
}

func (s *Semaphore) contenderKey() string { return path.Join(s.prefix, s.session) }
func (s *Semaphore) lockKey() string      { return path.Join(s.prefix, ".lock") }

// state reads the prefix: the .lock entry (zero if absent) and its
// holders, pruned to those whose contender key is still held.
func (s *Semaphore) state(ctx context.Context, index uint64) (kv.Entry, semaphoreLock, uint64, error) {
	entries, meta, err := s.c.List(ctx, s.prefix+"/", WaitIndex(index, 0))
	if err != nil {
		return kv.Entry{}, semaphoreLock{}, 0, err
	}
	var lockEntry kv.Entry
	live := map[string]bool{}
	for _, e := range entries {
		if e.Key == s.lockKey() {
			lockEntry = e
		} else if e.Session != "" {
			live[e.Session] = true
		}
	}
	sl := semaphoreLock{Limit: s.limit, Holders: map[string]bool{}}
	if lockEntry.Key != "" {
		if lockEntry.Flags != SemaphoreFlagValue {
			return kv.Entry{}, sl, 0, fmt.Errorf("semaphore %q: %s is not a semaphore's", s.prefix, s.lockKey())
		}
		if len(lockEntry.Value) > 0 {
			if err := json.Unmarshal(lockEntry.Value, &sl); err != nil {
				return kv.Entry{}, sl, 0, fmt.Errorf("semaphore %q: lock decoding failed: %w", s.prefix, err)
			}
		}
		if sl.Limit != s.limit {
			return kv.Entry{}, sl, 0, fmt.Errorf("semaphore limit conflict (lock: %d, local: %d)", sl.Limit, s.limit)
		}
	}
	for h := range sl.Holders {
		if !live[h] {
			delete(sl.Holders, h)
		}
	}
	if sl.Holders == nil {
		sl.Holders = map[string]bool{}
	}
	return lockEntry, sl, meta.Index, nil
}

// acquire adds this session to the holders when a slot is free.
func (s *Semaphore) acquire(ctx context.Context) error {
	var index uint64
	for {
		lockEntry, sl, idx, err := s.state(ctx, index)
		if err != nil {
			return err
		}
		if sl.Holders[s.session] {
			return nil
		}
		if len(sl.Holders) >= sl.Limit {
			index = idx
			continue
		}
		sl.Holders[s.session] = true
		if err := s.c.Put(ctx, s.lockKey(), encodeHolders(sl), WithCAS(lockEntry.ModifyIndex), WithFlags(SemaphoreFlagValue)); err != nil {
			if !errors.Is(err, kv.ErrCASMismatch) {
				return fmt.Errorf("semaphore %q: %w", s.prefix, err)
			}
			index = 0 // lost a race: read again
			continue
		}
		return nil
	}
}

func encodeHolders(sl semaphoreLock) []byte {
	b, _ := json.Marshal(sl) // map keys come out sorted
	return b
}

// monitor closes Lost once this session is no longer among the holders.
func (s *Semaphore) monitor() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
		case <-s.lost:
		}
		cancel()
	}()
	var index uint64
	for {
		_, sl, idx, err := s.state(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if !sl.Holders[s.session] {
			s.markLost()
			return
		}
		index = idx
	}
}

func (s *Semaphore) markLost() { s.lostOnce.Do(func() { close(s.lost) }) }

// Lost is closed when the slot is lost.
func (s *Semaphore) Lost() <-chan struct{} { return s.lost }

// Release gives the slot back.
func (s *Semaphore) Release(ctx context.Context) error {
	var err error
	for ctx.Err() == nil {
		var lockEntry kv.Entry
		var sl semaphoreLock
		if lockEntry, sl, _, err = s.state(ctx, 0); err != nil || !sl.Holders[s.session] {
			break
		}
		delete(sl.Holders, s.session)
		err = s.c.Put(ctx, s.lockKey(), encodeHolders(sl), WithCAS(lockEntry.ModifyIndex), WithFlags(SemaphoreFlagValue))
		if !errors.Is(err, kv.ErrCASMismatch) {
			break
		}
	}
	if derr := s.c.Delete(ctx, s.contenderKey()); err == nil {
		err = derr
	}
	s.shutdown()
	return err
}

func (s *Semaphore) shutdown() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	s.markLost()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = s.c.DestroySession(ctx, s.session)
	cancel()
}
