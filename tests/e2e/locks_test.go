package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	rkclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// Consul's own Go client, unchanged, doing what its users do with sessions:
// sessions with renewals, LockKey, SemaphorePrefix.
func TestConsulSessionsLocksAndSemaphores(t *testing.T) {
	c := startCluster(t, 3)
	leader, followers := leaderAndFollowers(c)
	a, b := client(t, followers[0].Addr), client(t, followers[1].Addr)
	l := client(t, leader.Addr)

	// Sessions: defaults, info on another node, renew, list, destroy.
	id, _, err := a.Session().Create(&consul.SessionEntry{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	se, meta, err := b.Session().Info(id, nil)
	if err != nil || se == nil || se.Node != followers[0].ID || se.LockDelay != 15*time.Second ||
		len(se.NodeChecks) != 1 || se.NodeChecks[0] != "serfHealth" || se.Behavior != "release" || !meta.KnownLeader || meta.LastIndex == 0 {
		t.Fatalf("info: %+v %+v %v", se, meta, err)
	}
	if nodes, _, err := l.Session().Node(followers[0].ID, nil); err != nil || len(nodes) != 1 {
		t.Fatalf("sessions of the node: %v %v", nodes, err)
	}
	ttlID, _, err := a.Session().Create(&consul.SessionEntry{TTL: "10s", Behavior: consul.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, _, err := b.Session().Renew(ttlID, nil); err != nil || r == nil || r.TTL != "10s" {
		t.Fatalf("renew: %+v %v", r, err)
	}
	noChecks, _, err := a.Session().CreateNoChecks(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if se, _, _ := a.Session().Info(noChecks, nil); se == nil || se.NodeChecks == nil || len(se.NodeChecks) != 0 {
		t.Fatalf("a session without checks: %+v", se)
	}
	// RenewPeriodic: stops and destroys the session when told to, and
	// reports a session that was destroyed under it.
	done := make(chan struct{})
	renewed := make(chan error, 1)
	go func() { renewed <- a.Session().RenewPeriodic("10s", ttlID, nil, done) }()
	close(done)
	if err := <-renewed; err != nil {
		t.Fatalf("RenewPeriodic after done: %v", err)
	}
	if se, _, _ := b.Session().Info(ttlID, nil); se != nil {
		t.Fatal("RenewPeriodic did not destroy the session when done")
	}
	if _, err := a.Session().Destroy(noChecks, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Session().RenewPeriodic("1s", noChecks, nil, make(chan struct{})); !errors.Is(err, consul.ErrSessionExpired) {
		t.Fatalf("RenewPeriodic of a destroyed session: %v", err)
	}

	// LockKey: held, refused to a contender, lost when the session goes.
	holder, err := a.LockOpts(&consul.LockOptions{Key: "app/leader", SessionOpts: &consul.SessionEntry{TTL: "15s", LockDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := holder.Lock(nil)
	if err != nil || lost == nil {
		t.Fatalf("lock: %v", err)
	}
	contender, _ := b.LockOpts(&consul.LockOptions{Key: "app/leader", LockTryOnce: true, LockWaitTime: 500 * time.Millisecond})
	if ch, err := contender.Lock(nil); err != nil || ch != nil {
		t.Fatalf("a second holder: %v %v", ch, err)
	}
	pair, _, err := l.KV().Get("app/leader", nil)
	if err != nil || pair == nil || pair.Session == "" || pair.LockIndex != 1 {
		t.Fatalf("lock key: %+v %v", pair, err)
	}
	if _, err := l.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder was not told that its lock was lost")
	}
	next, _ := b.LockKey("app/leader")
	ch, err := next.Lock(nil)
	if err != nil || ch == nil {
		t.Fatalf("lock after the holder lost it: %v", err)
	}
	if pair, _, _ := l.KV().Get("app/leader", nil); pair == nil || pair.LockIndex != 2 {
		t.Fatalf("fencing token after the second acquisition: %+v", pair)
	}
	if err := next.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("unlock did not close the leader channel")
	}

	// SemaphorePrefix with a limit of two and three contenders.
	var sems []*consul.Semaphore
	for _, cl := range []*consul.Client{a, b} {
		s, err := cl.SemaphorePrefix("app/workers", 2)
		if err != nil {
			t.Fatal(err)
		}
		if ch, err := s.Acquire(nil); err != nil || ch == nil {
			t.Fatalf("semaphore slot: %v", err)
		}
		sems = append(sems, s)
	}
	third, _ := l.SemaphoreOpts(&consul.SemaphoreOptions{Prefix: "app/workers", Limit: 2, SemaphoreTryOnce: true, SemaphoreWaitTime: 500 * time.Millisecond})
	if ch, err := third.Acquire(nil); err != nil || ch != nil {
		t.Fatalf("a third holder of a 2-semaphore: %v %v", ch, err)
	}
	if err := sems[0].Release(); err != nil {
		t.Fatal(err)
	}
	third, _ = l.SemaphorePrefix("app/workers", 2)
	if ch, err := third.Acquire(nil); err != nil || ch == nil {
		t.Fatalf("the third after a release: %v", err)
	}
}

func raftkvClient(t *testing.T, c *proccluster.Cluster) *rkclient.Client {
	t.Helper()
	var eps []string
	for _, p := range c.Procs {
		eps = append(eps, p.Addr)
	}
	cl, err := rkclient.New(rkclient.Config{Endpoints: eps, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// raftkv's Go client: locks with fencing tokens, elections, and a semaphore
// that consul/api's semaphore shares.
func TestClientLocksElectionsAndSemaphores(t *testing.T) {
	c := startCluster(t, 3)
	cl := raftkvClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first, err := cl.Lock(ctx, "jobs/nightly", rkclient.LockOptions{Value: []byte("a"), LockDelay: time.Millisecond})
	if err != nil || first.Index() != 1 {
		t.Fatalf("lock: %v (index %v)", err, first)
	}
	got := make(chan *rkclient.Lock, 1)
	go func() {
		l, err := cl.Lock(ctx, "jobs/nightly", rkclient.LockOptions{Value: []byte("b")})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	select {
	case <-got:
		t.Fatal("two holders at once")
	case <-first.Lost():
		t.Fatal("lost without a reason")
	case <-time.After(500 * time.Millisecond): // the second waits: a window to show it, not synchronisation
	}
	// The holder's session is invalidated behind its back: it learns, and
	// the waiting contender gets the lock with a higher fencing token.
	if err := cl.DestroySession(ctx, first.Session()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Lost():
	case <-ctx.Done():
		t.Fatal("the holder never learnt it lost the lock")
	}
	second := <-got
	if second == nil || second.Index() != 2 {
		t.Fatalf("second holder: %+v", second)
	}
	if err := second.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Election: campaign, observe, resign.
	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	el := cl.Election("service/leader")
	obs := el.Observe(obsCtx)
	if o := <-obs; o.Leader {
		t.Fatalf("a leader before anyone campaigned: %+v", o)
	}
	if err := el.Campaign(ctx, []byte("node-a:8080"), rkclient.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	if o := <-obs; !o.Leader || string(o.Value) != "node-a:8080" {
		t.Fatalf("observed %+v", o)
	}
	if v, ok, err := cl.Election("service/leader").Leader(ctx); err != nil || !ok || string(v) != "node-a:8080" {
		t.Fatalf("leader: %q %v %v", v, ok, err)
	}
	if err := el.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if o := <-obs; o.Leader {
		t.Fatalf("still a leader after resigning: %+v", o)
	}

	// A semaphore of 2 shared with consul/api's.
	ours, err := cl.Semaphore(ctx, "pool", 2, rkclient.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	theirs, _ := client(t, c.Procs[1].Addr).SemaphorePrefix("pool", 2)
	if ch, err := theirs.Acquire(nil); err != nil || ch == nil {
		t.Fatalf("consul/api in the same semaphore: %v", err)
	}
	full, _ := client(t, c.Procs[2].Addr).SemaphoreOpts(&consul.SemaphoreOptions{Prefix: "pool", Limit: 2, SemaphoreTryOnce: true, SemaphoreWaitTime: 300 * time.Millisecond})
	if ch, err := full.Acquire(nil); err != nil || ch != nil {
		t.Fatalf("a third holder: %v %v", ch, err)
	}
	if err := ours.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ch, err := full.Acquire(nil); err != nil || ch == nil {
		t.Fatalf("after our release: %v", err)
	}
}

// More of consul/api's lock and semaphore behaviour: a deleted lock key is
// a lost lock, lock and semaphore keys refuse each other, Destroy refuses a
// held or used lock, and a session reclaims a lock it already holds.
func TestConsulLockEdges(t *testing.T) {
	c := startCluster(t, 3)
	_, followers := leaderAndFollowers(c)
	a, b := client(t, followers[0].Addr), client(t, followers[1].Addr)

	// Deleting the key loses the lock.
	l, _ := a.LockKey("edge/deleted")
	lost, err := l.Lock(nil)
	if err != nil || lost == nil {
		t.Fatalf("lock: %v", err)
	}
	if _, err := b.KV().Delete("edge/deleted", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("deleting the lock key did not lose the lock")
	}
	l.Unlock()

	// Lock and semaphore flags refuse each other.
	sem, _ := a.SemaphorePrefix("edge/mixed", 2)
	if ch, err := sem.Acquire(nil); err != nil || ch == nil {
		t.Fatalf("semaphore: %v", err)
	}
	mixed, _ := b.LockKey("edge/mixed/.lock")
	if _, err := mixed.Lock(nil); !errors.Is(err, consul.ErrLockConflict) {
		t.Fatalf("a lock on a semaphore's key: %v", err)
	}
	sem.Release()
	held, _ := a.LockKey("edge/held")
	if _, err := held.Lock(nil); err != nil {
		t.Fatal(err)
	}
	semOnLock, _ := b.SemaphoreOpts(&consul.SemaphoreOptions{Prefix: "edge", Limit: 1, SemaphoreTryOnce: true, SemaphoreWaitTime: 200 * time.Millisecond})
	if _, err := b.KV().Put(&consul.KVPair{Key: "edge/.lock", Flags: consul.LockFlagValue}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := semOnLock.Acquire(nil); !errors.Is(err, consul.ErrSemaphoreConflict) {
		t.Fatalf("a semaphore over a lock's key: %v", err)
	}

	// Destroy: refused while held, or while another holds it; after
	// unlock it removes the key.
	if err := held.Destroy(); !errors.Is(err, consul.ErrLockHeld) {
		t.Fatalf("destroy of a held lock: %v", err)
	}
	other, _ := b.LockKey("edge/held")
	if err := other.Destroy(); !errors.Is(err, consul.ErrLockInUse) {
		t.Fatalf("destroy of a lock another holds: %v", err)
	}
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := held.Destroy(); err != nil {
		t.Fatalf("destroy after unlock: %v", err)
	}
	if pair, _, _ := b.KV().Get("edge/held", nil); pair != nil {
		t.Fatalf("destroy left the key: %+v", pair)
	}

	// A session reclaims a lock it holds (as after a client restart).
	id, _, err := a.Session().Create(&consul.SessionEntry{LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.LockOpts(&consul.LockOptions{Key: "edge/reclaim", Session: id})
	if _, err := first.Lock(nil); err != nil {
		t.Fatal(err)
	}
	again, _ := b.LockOpts(&consul.LockOptions{Key: "edge/reclaim", Session: id, LockTryOnce: true})
	if ch, err := again.Lock(nil); err != nil || ch == nil {
		t.Fatalf("reclaim with the same session: %v %v", ch, err)
	}
	if pair, _, _ := b.KV().Get("edge/reclaim", nil); pair == nil || pair.LockIndex != 1 || pair.Session != id {
		t.Fatalf("a reclaim is not a new acquisition: %+v", pair)
	}
}
