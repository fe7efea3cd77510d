package robustness

import (
	"context"
	"testing"
	"time"

	rkclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
	"github.com/raftkv/raftkv/kv"
)

// TestLockFollowsItsHoldersNode: an application holds a lock through its
// co-located node (the Consul agent model), another waits through a second
// node. Killing the leader must not cost the holder its lock (a new leader
// gives every session its TTL again); killing the holder's node (kill -9)
// must hand the lock over: the holder learns it lost the lock before the
// contender gets it, and the contender's LockIndex is higher.
func TestLockFollowsItsHoldersNode(t *testing.T) {
	c := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: proccluster.BuildOptions{Tags: "failpoints"}})
	leader := c.WaitLeader(20 * time.Second)
	holderNode, contenderNode := (leader+1)%3, (leader+2)%3
	via := func(i int) *rkclient.Client {
		cl, err := rkclient.New(rkclient.Config{Endpoints: []string{c.Procs[i].Addr}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	opts := rkclient.LockOptions{TTL: 10 * time.Second, LockDelay: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	holder, err := via(holderNode).Lock(ctx, "service/primary", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(context.Background())
	lost := make(chan time.Time, 1)
	go func() {
		select {
		case <-holder.Lost():
			lost <- time.Now()
		case <-ctx.Done():
		}
	}()
	type acquired struct {
		l   *rkclient.Lock
		at  time.Time
		err error
	}
	got := make(chan acquired, 1)
	go func() {
		l, err := via(contenderNode).Lock(ctx, "service/primary", opts)
		got <- acquired{l, time.Now(), err}
	}()

	// The leader dies; the holder's session outlives TTL after the election.
	c.Kill(leader)
	killed := time.Now()
	c.WaitLeader(20 * time.Second)
	time.Sleep(opts.TTL + 2*time.Second - time.Since(killed)) // the fault's duration, not synchronisation
	select {
	case <-lost:
		t.Fatal("the holder lost its lock when the leader died")
	case a := <-got:
		t.Fatalf("the contender got the lock while its holder lived: %v", a.err)
	default:
	}
	c.StartProc(leader)
	c.WaitReady(20 * time.Second)

	// The holder's node dies: the lock moves once the leader has not heard
	// from it for kv.NodeFailAfter, plus lock-delay.
	c.Kill(holderNode)
	killed = time.Now()
	var a acquired
	select {
	case a = <-got:
	case <-time.After(time.Minute):
		t.Fatal("the lock never moved")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.l.Unlock(context.Background())
	var lostAt time.Time
	select {
	case lostAt = <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the contender holds the lock and the old holder was never told it lost it")
	}
	if !lostAt.Before(a.at) {
		t.Errorf("the holder was told it lost the lock %s after the contender got it", lostAt.Sub(a.at))
	}
	if a.l.Index() != holder.Index()+1 {
		t.Errorf("fencing token: LockIndex %d after %d", a.l.Index(), holder.Index())
	}
	t.Logf("kill -9 of the holder's node → lock acquired through another node after %s (node failure after %s, lock-delay %s); holder told after %s",
		a.at.Sub(killed).Round(10*time.Millisecond), kv.NodeFailAfter, opts.LockDelay, lostAt.Sub(killed).Round(10*time.Millisecond))
}
