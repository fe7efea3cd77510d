package fsm

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

func createSession(id, behavior string, lockDelay time.Duration) kv.Op {
	return kv.Op{Verb: kv.VerbSessionCreate, Session: id, Value: EncodeSession(&kv.Session{
		Name: "test", Node: "n1", Behavior: behavior, LockDelay: lockDelay, TTL: "15s", NodeChecks: []string{kv.SerfHealth}})}
}

func destroySession(id string) kv.Op { return kv.Op{Verb: kv.VerbSessionDestroy, Session: id} }

func lock(key, session, value string) kv.Op {
	return kv.Op{Verb: kv.VerbLock, Key: key, Session: session, Value: []byte(value)}
}

func unlock(key, session string) kv.Op { return kv.Op{Verb: kv.VerbUnlock, Key: key, Session: session} }

// failure returns the What of a failed single-op result, "" if it succeeded.
func failure(t *testing.T, v any) string {
	t.Helper()
	r := mustResult(t, v)
	if r.OK {
		return ""
	}
	return r.Errors[0].What
}

func TestAcquireRelease(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(1, 0, "", createSession("a", kv.BehaviorRelease, 0)))
	f.Apply(timed(2, 0, "", createSession("b", kv.BehaviorRelease, 0)))

	if w := failure(t, f.Apply(timed(3, 0, "", lock("k", "a", "v1")))); w != "" {
		t.Fatalf("acquire of a free key: %s", w)
	}
	e := mustGet(t, f, "k")
	if e.LockIndex != 1 || e.Session != "a" || string(e.Value) != "v1" || e.ModifyIndex != 3 {
		t.Fatalf("after acquire: %+v", e)
	}
	// The holder writes again: value changes, LockIndex does not.
	if w := failure(t, f.Apply(timed(4, 0, "", lock("k", "a", "v2")))); w != "" {
		t.Fatalf("re-acquire by the holder: %s", w)
	}
	if e := mustGet(t, f, "k"); e.LockIndex != 1 || string(e.Value) != "v2" {
		t.Fatalf("after re-acquire: %+v", e)
	}
	if w := failure(t, f.Apply(timed(5, 0, "", lock("k", "b", "x")))); !strings.Contains(w, "lock is already held") {
		t.Fatalf("acquire of a held key: %q", w)
	}
	r := mustResult(t, f.Apply(timed(6, 0, "", lock("k", "nope", "x"))))
	if r.OK || !r.Errors[0].InvalidSession || r.Errors[0].What != `invalid session "nope"` {
		t.Fatalf("acquire with an unknown session: %+v", r)
	}
	if w := failure(t, f.Apply(timed(7, 0, "", unlock("k", "b")))); !strings.Contains(w, "isn't held") {
		t.Fatalf("release by a non-holder: %q", w)
	}
	// A plain write ignores the lock and keeps it.
	f.Apply(timed(8, 0, "", set("k", "plain")))
	if e := mustGet(t, f, "k"); e.Session != "a" || e.LockIndex != 1 {
		t.Fatalf("a plain write changed the lock: %+v", e)
	}
	if w := failure(t, f.Apply(timed(9, 0, "", unlock("k", "a")))); w != "" {
		t.Fatalf("release by the holder: %s", w)
	}
	if e := mustGet(t, f, "k"); e.Session != "" || e.LockIndex != 1 || e.ModifyIndex != 9 {
		t.Fatalf("after release: %+v", e)
	}
	// A voluntary release sets no lock-delay: b takes it at once.
	if w := failure(t, f.Apply(timed(10, 0, "", lock("k", "b", "x")))); w != "" {
		t.Fatalf("acquire after a release: %s", w)
	}
	if e := mustGet(t, f, "k"); e.LockIndex != 2 || e.Session != "b" {
		t.Fatalf("second acquisition: %+v", e)
	}
	r = mustResult(t, f.Apply(timed(11, 0, "", kv.Op{Verb: kv.VerbCheckSession, Key: "k", Session: "a"})))
	if r.OK || r.Errors[0].What != `failed session check for key "k", current session "b" != "a"` {
		t.Fatalf("check-session by a non-holder: %+v", r)
	}
	r = mustResult(t, f.Apply(timed(12, 0, "", kv.Op{Verb: kv.VerbGetOrEmpty, Key: "missing"})))
	if !r.OK || len(r.Entries) != 1 || r.Entries[0].Key != "missing" || r.Entries[0].Value != nil {
		t.Fatalf("get-or-empty of a missing key: %+v", r)
	}
}

func TestInvalidationReleasesAndStartsLockDelay(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(1, 0, "", createSession("a", kv.BehaviorRelease, 15*time.Second)))
	f.Apply(timed(2, 0, "", createSession("b", kv.BehaviorRelease, 0)))
	f.Apply(timed(3, 0, "", lock("k", "a", "v")))
	f.Apply(timed(4, time.Second, "", destroySession("a")))
	e := mustGet(t, f, "k")
	if e.Session != "" || e.LockIndex != 1 || e.ModifyIndex != 4 || string(e.Value) != "v" {
		t.Fatalf("after invalidation: %+v", e)
	}
	if _, _, ok, _ := f.Session("a"); ok {
		t.Fatal("destroyed session still listed")
	}
	// Lock-delay runs on the leader-stamped time in the entries: 1s + 15s.
	if w := failure(t, f.Apply(timed(5, 15*time.Second, "", lock("k", "b", "x")))); w != `failed to lock key "k" due to lock delay` {
		t.Fatalf("acquire under lock-delay: %q", w)
	}
	if w := failure(t, f.Apply(timed(6, 17*time.Second, "", lock("k", "b", "x")))); w != "" {
		t.Fatalf("acquire after lock-delay: %s", w)
	}
	if e := mustGet(t, f, "k"); e.LockIndex != 2 || e.Session != "b" {
		t.Fatalf("acquired after lock-delay: %+v", e)
	}
	// Destroying an unknown session is a no-op that succeeds.
	if w := failure(t, f.Apply(timed(7, 17*time.Second, "", destroySession("a")))); w != "" {
		t.Fatalf("destroy of an unknown session: %s", w)
	}
}

func TestDeleteBehaviourAndLockIndexAcrossDeletes(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(1, 0, "", createSession("a", kv.BehaviorDelete, 0)))
	f.Apply(timed(2, 0, "", createSession("b", kv.BehaviorDelete, 0)))
	f.Apply(timed(3, 0, "", lock("k", "a", "v")))
	f.Apply(timed(4, 0, "", destroySession("a")))
	wantAbsent(t, f, "k")
	// (key, LockIndex) must not repeat: the new key continues from the tombstone.
	f.Apply(timed(5, 0, "", lock("k", "b", "w")))
	if e := mustGet(t, f, "k"); e.LockIndex != 2 || e.CreateIndex != 5 {
		t.Fatalf("re-created lock key: %+v", e)
	}
	f.Apply(timed(6, 0, "", kv.Op{Verb: kv.VerbDeleteTree, Key: ""}))
	f.Apply(timed(7, 0, "", set("k", "plain")))
	if e := mustGet(t, f, "k"); e.LockIndex != 2 || e.Session != "" {
		t.Fatalf("key re-created by a plain write: %+v", e)
	}
}

func TestSessionsQueriesAndSnapshot(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	f.Apply(timed(5, 0, "", createSession("a", kv.BehaviorRelease, time.Second)))
	f.Apply(timed(6, 0, "", kv.Op{Verb: kv.VerbSessionCreate, Session: "b", Value: EncodeSession(&kv.Session{Node: "n2", Behavior: kv.BehaviorDelete})}))
	f.Apply(timed(7, 0, "", lock("k", "a", "v")))
	all, idx, err := f.Sessions("")
	if err != nil || len(all) != 2 || idx != 6 || all[0].ID != "a" || all[0].CreateIndex != 5 || all[0].TTL != "15s" {
		t.Fatalf("sessions: %+v index %d, %v", all, idx, err)
	}
	if onN2, _, _ := f.Sessions("n2"); len(onN2) != 1 || onN2[0].ID != "b" || len(onN2[0].NodeChecks) != 0 {
		t.Fatalf("sessions of n2: %+v", onN2)
	}
	var snap bytes.Buffer
	if _, err := f.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	g := mustOpen(t, t.TempDir())
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
		t.Fatal(err)
	}
	s, _, ok, err := g.Session("a")
	if err != nil || !ok || s.Node != "n1" || s.LockDelay != time.Second {
		t.Fatalf("restored session: %+v %v %v", s, ok, err)
	}
	// The restored node knows what the session holds.
	g.Apply(timed(8, 0, "", destroySession("a")))
	if e := mustGet(t, g, "k"); e.Session != "" {
		t.Fatalf("invalidation after restore did not release: %+v", e)
	}
}
