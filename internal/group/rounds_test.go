package group

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// A call stuck on a leader that went silent must not hold the reads that
// arrive after it: once it has run for slowAfter, the next round starts.
func TestSlowRoundDoesNotHoldTheNext(t *testing.T) {
	r := &rounds{slowAfter: 10 * time.Millisecond}
	stuck := make(chan struct{})
	defer close(stuck)
	var calls atomic.Int32
	first := make(chan error, 1)
	go func() {
		_, err := r.do(context.Background(), func() (uint64, error) {
			calls.Add(1)
			<-stuck
			return 0, errors.New("timed out")
		})
		first <- err
	}()
	waitFor(t, 5*time.Second, "the first call to start", func() error {
		if calls.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	idx, err := r.do(ctx, func() (uint64, error) { calls.Add(1); return 42, nil })
	if err != nil || idx != 42 {
		t.Fatalf("a read arriving behind a stuck round: %d, %v", idx, err)
	}
	select {
	case err := <-first:
		t.Fatalf("the stuck round answered early: %v", err)
	default:
	}
}

// Callers arriving while a round runs share the next one; a caller whose
// context ends stops waiting without ending the round.
func TestRoundsShareCallsAndHonourCallerContext(t *testing.T) {
	r := &rounds{}
	release := make(chan struct{})
	var calls atomic.Int32
	call := func() (uint64, error) { calls.Add(1); <-release; return 7, nil }
	results := make(chan uint64, 3)
	go func() { i, _ := r.do(context.Background(), call); results <- i }()
	waitFor(t, 5*time.Second, "the first round to start", func() error {
		if calls.Load() != 1 {
			return errors.New("not yet")
		}
		return nil
	})
	for range 2 {
		go func() { i, _ := r.do(context.Background(), call); results <- i }()
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.do(gone, call); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a caller that gave up: %v", err)
	}
	waitFor(t, 5*time.Second, "the late callers to queue", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.waiting) != 3 { // two readers and the one that gave up
			return errors.New("not yet")
		}
		return nil
	})
	close(release)
	for range 3 {
		if i := <-results; i != 7 {
			t.Fatalf("result %d", i)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls for two rounds of callers", n)
	}
}
