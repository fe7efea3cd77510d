package raftstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

func TestSessionsAndLocksAcrossNodes(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	f := c.followers()
	a, b := c.nodes[f[0]], c.nodes[f[1]]

	// Created through a follower: the ID is chosen on the leader, the node
	// defaults to the one that received the request.
	id, err := a.CreateSession(ctx(t), kv.Session{Name: "x", LockDelay: 15 * time.Second, NodeChecks: []string{kv.SerfHealth}})
	if err != nil || len(id) != 36 {
		t.Fatalf("create: %q, %v", id, err)
	}
	res, err := b.sessions.Sessions(ctx(t), kv.SessionQuery{ID: id})
	if err != nil || len(res.Sessions) != 1 || res.Sessions[0].Node != a.ID() || res.Index == 0 {
		t.Fatalf("info on another follower: %+v, %v", res, err)
	}
	other, err := b.CreateSession(ctx(t), kv.Session{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateSession(ctx(t), kv.Session{Node: "nobody"}); !errors.Is(err, kv.ErrSession) || err.Error() != "Missing node registration" {
		t.Fatalf("session on a node that is not a member: %v", err)
	}

	if ok, err := a.Acquire(ctx(t), "lock", []byte("me"), id); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if ok, err := b.Acquire(ctx(t), "lock", []byte("you"), other); ok || err != nil {
		t.Fatalf("acquire of a held lock: %v %v", ok, err)
	}
	if _, err := b.Acquire(ctx(t), "lock", nil, "no-such-session"); !errors.Is(err, kv.ErrSession) || err.Error() != `invalid session "no-such-session"` {
		t.Fatalf("acquire with an unknown session: %v", err)
	}
	e, err := b.Get(ctx(t), "lock")
	if err != nil || e.Session != id || e.LockIndex != 1 || string(e.Value) != "me" {
		t.Fatalf("lock key: %+v, %v", e, err)
	}
	// What a session holds, on another node: a lock released or a key
	// deleted is no longer held, though the session lives on.
	for _, k := range []string{"released", "deleted"} {
		if ok, err := a.Acquire(ctx(t), k, nil, id); !ok || err != nil {
			t.Fatalf("acquire %s: %v %v", k, ok, err)
		}
	}
	if ok, err := a.Release(ctx(t), "released", nil, id); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	if err := a.Delete(ctx(t), "deleted"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Acquire(ctx(t), "theirs", nil, other); !ok || err != nil {
		t.Fatalf("acquire theirs: %v %v", ok, err)
	}
	held, err := b.sessions.HeldKeys(ctx(t), false)
	if err != nil || len(held) != 2 || len(held[id]) != 1 || held[id][0] != "lock" || len(held[other]) != 1 || held[other][0] != "theirs" {
		t.Fatalf("keys held by sessions: %q, %v", held, err)
	}
	if ok, err := b.Release(ctx(t), "theirs", nil, other); !ok || err != nil {
		t.Fatalf("release theirs: %v %v", ok, err)
	}
	// Renewed through a follower (forwarded to the leader's timers).
	if s, err := b.RenewSession(ctx(t), id); err != nil || s.ID != id {
		t.Fatalf("renew: %+v, %v", s, err)
	}
	if _, err := a.RenewSession(ctx(t), "no-such-session"); !errors.Is(err, kv.ErrNotFound) || err.Error() != "Session id 'no-such-session' not found" {
		t.Fatalf("renew of an unknown session: %v", err)
	}

	// Invalidation releases the lock and starts lock-delay, which a new
	// leader still enforces: it is replicated state.
	if err := a.DestroySession(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if e, _ := b.Get(ctx(t), "lock"); e.Session != "" {
		t.Fatalf("still held after destroy: %+v", e)
	}
	if held, err := b.sessions.HeldKeys(ctx(t), false); err != nil || len(held) != 0 {
		t.Fatalf("keys held after the destroy: %q, %v", held, err)
	}
	if err := c.nodes[l].Kill(); err != nil {
		t.Fatal(err)
	}
	c.nodes[l] = nil
	c.leader()
	if ok, err := b.Acquire(ctx(t), "lock", []byte("you"), other); ok || err != nil {
		t.Fatalf("acquire under lock-delay after a leader change: %v %v", ok, err)
	}
	all, err := b.sessions.Sessions(ctx(t), kv.SessionQuery{})
	if err != nil || len(all.Sessions) != 1 || all.Sessions[0].ID != other {
		t.Fatalf("sessions after destroy: %+v, %v", all, err)
	}
}

// A TTL session that is not renewed is invalidated by the leader after 2×TTL
// (never before TTL), through the log, on every node.
func TestSessionTTLExpires(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	n := c.nodes[c.followers()[0]]
	created := time.Now()
	id, err := n.CreateSession(ctx(t), kv.Session{TTL: "10s", Behavior: kv.BehaviorDelete})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := n.Acquire(ctx(t), "ttl/key", []byte("v"), id); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	waitFor(t, 40*time.Second, "the session to expire", func() error {
		res, err := n.sessions.Sessions(ctx(t), kv.SessionQuery{ID: id})
		if err != nil {
			return err
		}
		if len(res.Sessions) != 0 {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if d := time.Since(created); d < 10*time.Second {
		t.Fatalf("invalidated after %s, before its TTL", d)
	}
	if _, err := n.Get(ctx(t), "ttl/key"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("key of an expired delete-session: %v", err)
	}
}
