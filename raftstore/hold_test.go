package raftstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/kv"
)

// A leader that loses its majority steps down after its lease and then
// answers at once: it knows it cannot reach a majority, so waiting for the
// caller's deadline would only hold the client.
func TestCutOffLeaderAnswersAtOnce(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	mustSet(t, c.nodes[l], "k", "v")
	c.killAllBut(l)
	c.waitStepDown(l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a wait would end in a deadline error, not group.ErrCutOff
	defer cancel()
	if _, err := c.nodes[l].Set(ctx, "k", []byte("w")); !errors.Is(err, ErrNoLeader) || !errors.Is(err, group.ErrCutOff) {
		t.Fatalf("write on a cut-off node: %v", err)
	}
	if _, err := c.nodes[l].Get(ctx, "k"); !errors.Is(err, ErrNoLeader) || !errors.Is(err, group.ErrCutOff) {
		t.Fatalf("read on a cut-off node: %v", err)
	}
	if got := mustGetValue(t, c.nodes[l], "k", Stale()); got != "v" {
		t.Fatalf("stale read on a cut-off node: %q", got)
	}
}

// A request held for a leader (kv.WithLeaderHold, what the HTTP API does
// for Consul's clients) waits on a cut-off node instead of answering at
// once: it fails with ErrNoLeader once its hold is over, not before, and
// is served if a leader appears within the hold.
func TestHeldRequestWaitsForALeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	mustSet(t, c.nodes[l], "k", "v")
	followers := c.followers()
	for _, f := range followers {
		c.stop(f) // closed, not killed: they come back below
	}
	c.waitStepDown(l)
	const hold = 1500 * time.Millisecond
	start := time.Now()
	_, err := c.nodes[l].Get(kv.WithLeaderHold(ctx(t), hold), "k")
	if !errors.Is(err, ErrNoLeader) || time.Since(start) < hold {
		t.Fatalf("a held read on a cut-off node: %v after %v (hold %v)", err, time.Since(start), hold)
	}
	// A write held while the others come back is served.
	done := make(chan error, 1)
	go func() {
		_, err := c.nodes[l].Set(kv.WithLeaderHold(ctx(t), time.Minute), "k", []byte("w"))
		done <- err
	}()
	for _, f := range followers {
		c.start(f)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a write held until a leader came back: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a held write never returned")
	}
	waitFor(t, 10*time.Second, "the held write everywhere", func() error {
		for _, n := range c.nodes {
			if e, err := n.Get(ctx(t), "k", Stale()); err != nil || string(e.Value) != "w" {
				return fmt.Errorf("%s has %q (%v)", n.ID(), e.Value, err)
			}
		}
		return nil
	})
}

// A consistent blocking query is bound to the leader it was linearized
// under: on a node that loses the cluster, it fails once no leader comes
// back within the hold, instead of waiting out its wait (a lock monitor
// that keeps no time of its own learns in seconds, not minutes). A stale
// one goes on waiting: it needs no leader.
func TestConsistentBlockingQueryEndsWithItsLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f, idx := c.followerWith("k", "v")
	consistent := c.blockingGet(context.Background(), f, "k", idx, false)
	stale := c.blockingGet(context.Background(), f, "k", idx, true)
	c.waitWatching(f, 2)
	c.killAllBut(f)
	select {
	case err := <-consistent:
		if !errors.Is(err, ErrNoLeader) {
			t.Fatalf("consistent blocking query on a node that lost the cluster: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a consistent blocking query outlived its leader by 30s")
	}
	select {
	case err := <-stale:
		t.Fatalf("a stale blocking query ended with the leader: %v", err)
	default:
	}
	c.nodes[f].Close() // ends the stale query
	<-stale
	c.nodes[f] = nil
}

// A held blocking query (a Consul client's lock monitor or watch) that has
// waited longer than its hold when its leader goes is held again from the
// loss, as a request that just arrived would be, not failed at once.
func TestHeldBlockingQueryIsHeldFromTheLoss(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f, idx := c.followerWith("k", "v")
	const hold = 3 * time.Second
	done := c.blockingGet(kv.WithLeaderHold(context.Background(), hold), f, "k", idx, false)
	c.waitWatching(f, 1)
	time.Sleep(hold + 500*time.Millisecond) // the query outlives its first hold: the fault's timing
	lost := time.Now()
	c.killAllBut(f)
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoLeader) || time.Since(lost) < hold {
			t.Fatalf("a held blocking query ended %v after its leader was lost, within the hold (%v): %v", time.Since(lost), hold, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a held blocking query outlived its leader by 30s")
	}
}
