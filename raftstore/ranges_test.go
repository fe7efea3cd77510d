package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/kv"
)

func rangesOf(t *testing.T, s *RaftStore) string {
	t.Helper()
	rs, err := s.Ranges(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var b []string
	for _, r := range rs {
		b = append(b, fmt.Sprintf("[%q,%q)", r.Start, r.End))
	}
	return strings.Join(b, " ")
}

// A split on a follower: every node then runs both ranges, routes each
// key to its range from any node, lists across both in order, refuses a
// transaction over both, and keeps everything through a restart of the
// whole cluster. Writes that run during the split are all there, once.
func TestSplitRangeOnRunningCluster(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for _, k := range []string{"a/1", "m/1", "z/1"} {
		mustSet(t, c.nodes[0], k, "before")
	}
	before, err := c.nodes[0].Get(ctx(t), "z/1")
	if err != nil {
		t.Fatal(err)
	}

	// Writers on every node, through the split, each key written once
	// with an idempotency key.
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx(t))
	var mu sync.Mutex
	written := map[string]bool{}   // answered: applied
	attempted := map[string]bool{} // sent, possibly applied (cut off by the end of the test)
	var failed []error
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				key := fmt.Sprintf("%c/w%d-%d", "amz"[i%3], w, i)
				mu.Lock()
				attempted[key] = true
				mu.Unlock()
				_, err := c.nodes[w].Set(wctx, key, []byte("x"), func(c *kv.Command) { c.IdempotencyKey = key })
				mu.Lock()
				if err == nil {
					written[key] = true
				} else if wctx.Err() == nil {
					failed = append(failed, fmt.Errorf("%s: %w", key, err))
				}
				mu.Unlock()
			}
		}()
	}
	// More keyed writes than a split moves in one transaction: the split
	// moves their idempotency records in pieces.
	waitFor(t, 30*time.Second, "writes before the split", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(written) < 1500 {
			return fmt.Errorf("%d writes", len(written))
		}
		return nil
	})
	f := c.followers()[0]
	mu.Lock()
	answered := len(written)
	mu.Unlock()
	began := time.Now()
	split, err := c.nodes[f].SplitRange(ctx(t), "m/")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	t.Logf("split under writes from 3 nodes took %v; %d writes answered meanwhile, %d failed", time.Since(began).Round(time.Millisecond), len(written)-answered, len(failed))
	mu.Unlock()
	left, right := split.Left, split.Right
	if left.End != "m/" || right.Start != "m/" || right.End != "" || right.ID == 0 || len(right.Replicas) != 3 {
		t.Fatalf("split: %+v / %+v", left, right)
	}
	// Let the writers run on both ranges for a moment.
	waitFor(t, 10*time.Second, "writes after the split", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(written) < answered+200 {
			return fmt.Errorf("%d writes", len(written))
		}
		return nil
	})
	stop()
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d writes failed during the split, first: %v", len(failed), failed[0])
	}

	for _, n := range c.nodes {
		waitFor(t, 10*time.Second, "both ranges on "+n.ID(), func() error {
			if got := rangesOf(t, n); got != `["","m/") ["m/","")` {
				return fmt.Errorf("ranges %s", got)
			}
			return nil
		})
		for k := range written {
			if got := mustGetValue(t, n, k); got != "x" {
				t.Fatalf("%s on %s: %q", k, n.ID(), got)
			}
		}
		keys, err := n.Keys(ctx(t), "", "/")
		if err != nil || strings.Join(keys, " ") != "a/ m/ z/" {
			t.Fatalf("keys with separator on %s: %v, %v", n.ID(), keys, err)
		}
		all, err := n.List(ctx(t), "")
		if err != nil {
			t.Fatal(err)
		}
		listed := 0
		for i, e := range all {
			if i > 0 && all[i-1].Key >= e.Key {
				t.Fatalf("list on %s out of order (or twice) at %q, %q", n.ID(), all[i-1].Key, e.Key)
			}
			if !attempted[e.Key] && e.Key != "a/1" && e.Key != "m/1" && e.Key != "z/1" {
				t.Fatalf("list on %s has %q, never written", n.ID(), e.Key)
			}
			if written[e.Key] {
				listed++
			}
		}
		if listed != len(written) {
			t.Fatalf("list on %s has %d of the %d writes answered", n.ID(), listed, len(written))
		}
	}
	// The operator's view, over HTTP from any node.
	var listed []api.Range
	waitFor(t, 10*time.Second, "a leader for both ranges in /v1/operator/ranges", func() error {
		resp, err := http.Get("http://" + c.nodes[2].Addr() + "/v1/operator/ranges")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		listed = nil
		if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil {
			return err
		}
		if len(listed) != 2 || listed[0].Leader == "" || listed[1].Leader == "" {
			return fmt.Errorf("%+v", listed)
		}
		return nil
	})
	if listed[1].ID != right.ID || listed[0].End != "m/" || listed[0].Keys+listed[1].Keys < int64(len(written)+3) || listed[1].Bytes == 0 {
		t.Fatalf("/v1/operator/ranges: %+v", listed)
	}
	after := mustSet(t, c.nodes[1], "z/1", "after")
	if after <= before.ModifyIndex || after >= 1<<53 {
		t.Fatalf("z/1 written at %d after the split, was %d", after, before.ModifyIndex)
	}
	res, err := c.nodes[2].Apply(ctx(t), &kv.Command{Ops: []kv.Op{
		{Verb: kv.VerbSet, Key: "a/t", Value: []byte("1")}, {Verb: kv.VerbSet, Key: "z/t", Value: []byte("1")},
	}})
	if err != nil || res.OK || len(res.Errors) != 1 || res.Errors[0].OpIndex != 1 || !strings.Contains(res.Errors[0].What, "txn spans ranges") {
		t.Fatalf("a txn over both ranges: %+v, %v", res, err)
	}
	if _, err := c.nodes[0].Get(ctx(t), "a/t"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("the refused txn wrote a/t: %v", err)
	}
	if _, err := c.nodes[0].SplitRange(ctx(t), "q"); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("split at a key not ending with /: %v", err)
	}

	// The whole cluster restarts: both ranges and every key are back, and
	// indexes go on growing.
	c.closeAll()
	for i := range c.nodes {
		c.start(i)
	}
	c.waitVoters(3)
	for _, n := range c.nodes {
		waitFor(t, 20*time.Second, "z/1 readable on "+n.ID(), func() error {
			e, err := n.Get(ctx(t), "z/1")
			if err != nil {
				return err
			}
			if string(e.Value) != "after" || e.ModifyIndex != after {
				return fmt.Errorf("z/1 = %q at %d", e.Value, e.ModifyIndex)
			}
			return nil
		})
		if got := rangesOf(t, n); got != `["","m/") ["m/","")` {
			t.Fatalf("ranges on %s after restart: %s", n.ID(), got)
		}
	}
	if again := mustSet(t, c.nodes[0], "z/1", "again"); again <= after {
		t.Fatalf("z/1 written at %d after the restart, was %d", again, after)
	}
}

// A blocking listing over two ranges wakes for a write in either, with an
// index above the one it held, even when one range's indexes run ahead of
// the other's (a leader's clock ahead): the read closes both ranges at
// one index, so a write the listing did not see is always above it.
func TestBlockingQueryAcrossRangesNeverMissesAWrite(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	mustSet(t, c.nodes[0], "a/0", "x")
	mustSet(t, c.nodes[0], "z/0", "x")
	split, err := c.nodes[0].SplitRange(ctx(t), "m/")
	if err != nil {
		t.Fatal(err)
	}
	// Range z/'s indexes jump half a second ahead of the clock.
	var right *group.Group
	for _, g := range c.nodes[0].ranges.Groups() {
		if g.GroupID() == split.Right.ID {
			right = g
		}
	}
	if res, err := right.CloseAt(ctx(t), fsm.ClockIndex(time.Now().Add(500*time.Millisecond))); err != nil || !res.OK {
		t.Fatalf("moving range %d ahead: %+v, %v", split.Right.ID, res, err)
	}
	mustSet(t, c.nodes[1], "z/1", "ahead")

	res, err := c.nodes[2].Read(ctx(t), kv.Query{Kind: kv.ReadKeys, Key: ""})
	if err != nil {
		t.Fatal(err)
	}
	index := res.Index
	for i, key := range []string{"a/1", "z/2", "a/2", "a/3", "z/3"} {
		woke := make(chan *kv.QueryResult, 1)
		go func() {
			r, err := c.nodes[i%3].Read(ctx(t), kv.Query{Kind: kv.ReadKeys, Key: "", MinIndex: index, Wait: 30 * time.Second})
			if err != nil {
				t.Error(err)
			}
			woke <- r
		}()
		c.waitWatching(i%3, 1)
		mustSet(t, c.nodes[(i+1)%3], key, "x")
		select {
		case r := <-woke:
			if r == nil {
				t.FailNow()
			}
			if r.Index <= index || !slices.Contains(r.Keys, key) {
				t.Fatalf("write %d (%s): woke with index %d (held %d), keys %v", i, key, r.Index, index, r.Keys)
			}
			index = r.Index
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d (%s) did not wake the query holding index %d", i, key, index)
		}
	}
}

// A backup of a cluster of two ranges, taken while a client writes keys
// in order, alternating between the ranges, holds a prefix of that order
// (a state one read of both ranges could have seen), and restores into a
// new cluster of one range, into the cluster it came from (after more
// writes) and into a cluster cut into other ranges, with indexes that go
// on above the backup's.
func TestBackupAcrossRangesIsOneState(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	if _, err := c.nodes[0].SplitRange(ctx(t), "m/"); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx(t))
	done := make(chan int)
	go func() {
		i := 0
		for ; wctx.Err() == nil; i++ {
			key := fmt.Sprintf("%c/%06d", "az"[i%2], i)
			if _, err := c.nodes[1].Set(wctx, key, []byte("x")); err != nil {
				break
			}
		}
		done <- i
	}()
	waitFor(t, 10*time.Second, "writes in both ranges", func() error {
		if keys, err := c.nodes[0].Keys(ctx(t), "z/", ""); err != nil || len(keys) < 20 {
			return fmt.Errorf("%d keys, %v", len(keys), err)
		}
		return nil
	})
	// Listings over both ranges meanwhile: each is a prefix of the order
	// too (a write that finished before the next began is never missing
	// when the next is there).
	for l := range 20 {
		keys, err := c.nodes[l%3].Keys(ctx(t), "", "")
		if err != nil {
			t.Fatal(err)
		}
		checkPrefix(t, fmt.Sprintf("listing %d", l), keys)
	}
	var backup bytes.Buffer
	if err := c.nodes[2].SaveSnapshot(ctx(t), &backup, false); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	last, err := c.nodes[0].Get(ctx(t), "a/000000")
	if err != nil {
		t.Fatal(err)
	}
	fresh := newTestCluster(t, 1, nil)
	if err := fresh.nodes[0].RestoreSnapshot(ctx(t), bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	keys, err := fresh.nodes[0].Keys(ctx(t), "", "")
	if err != nil {
		t.Fatal(err)
	}
	n := len(keys)
	checkPrefix(t, "the backup", keys)
	if n < 40 {
		t.Fatalf("the backup holds %d keys", n)
	}
	e, err := fresh.nodes[0].Get(ctx(t), "a/000000")
	if err != nil || e.ModifyIndex != last.ModifyIndex {
		t.Fatalf("a/000000 restored: %+v, %v (was at %d)", e, err, last.ModifyIndex)
	}
	if idx := mustSet(t, fresh.nodes[0], "after/restore", "x"); idx <= last.ModifyIndex {
		t.Fatalf("a write after the restore got index %d, not above the backup's %d", idx, last.ModifyIndex)
	}

	// Into the cluster it came from (two ranges), after writes in both:
	// every range is the backup's again.
	lastBefore := mustSet(t, c.nodes[0], "z/after-backup", "x")
	mustSet(t, c.nodes[0], "a/after-backup", "x")
	if err := c.nodes[0].RestoreSnapshot(ctx(t), bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatalf("restore into the cluster of two ranges: %v", err)
	}
	// And into a cluster cut elsewhere, in three ranges.
	other := newTestCluster(t, 3, nil)
	for _, at := range []string{"b/", "y/"} {
		if _, err := other.nodes[0].SplitRange(ctx(t), at); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.nodes[1].RestoreSnapshot(ctx(t), bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatalf("restore into a cluster of three other ranges: %v", err)
	}
	for name, s := range map[string]*RaftStore{"the cluster of two ranges": c.nodes[2], "the cluster of three ranges": other.nodes[2]} {
		got, err := s.Keys(ctx(t), "", "")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != strings.Join(keys, " ") {
			t.Fatalf("%s after the restore: %d keys, the backup has %d", name, len(got), len(keys))
		}
		e, err := s.Get(ctx(t), "a/000000")
		if err != nil || e.ModifyIndex != last.ModifyIndex {
			t.Fatalf("%s: a/000000 restored: %+v, %v (was at %d)", name, e, err, last.ModifyIndex)
		}
		if idx := mustSet(t, s, "z/after-restore", "x"); idx <= max(last.ModifyIndex, lastBefore) {
			t.Fatalf("%s: a write after the restore got index %d, not above %d", name, idx, max(last.ModifyIndex, lastBefore))
		}
	}
	rs, err := other.nodes[0].Ranges(ctx(t))
	if err != nil || len(rs) != 3 || len(rs[1].Replicas) != 3 || rs[1].Generation == 0 {
		t.Fatalf("the ranges after the restore: %+v, %v", rs, err)
	}
	// The backup came from a cluster that handed out fewer range IDs: a
	// split after the restore still gets a new one.
	split, err := other.nodes[0].SplitRange(ctx(t), "c/")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.ID == split.Right.ID {
			t.Fatalf("a split after the restore handed out range ID %d again", r.ID)
		}
	}
}

// A lock in a range other than 0 keeps range 0's rules: only a session
// range 0 has may take it, and invalidating the session releases it, with
// lock-delay, as it releases the session's keys in range 0; the session
// cannot take it again afterwards.
func TestLocksAcrossRanges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	if _, err := c.nodes[0].SplitRange(ctx(t), "m/"); err != nil {
		t.Fatal(err)
	}
	sess, err := c.nodes[0].CreateSession(ctx(t), kv.Session{Behavior: kv.BehaviorRelease, LockDelay: time.Second, TTL: "30s"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.nodes[1].CreateSession(ctx(t), kv.Session{Behavior: kv.BehaviorRelease, TTL: "30s"})
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range []string{"a/lock", "z/lock"} {
		if ok, err := c.nodes[i+1].Acquire(ctx(t), key, []byte("me"), sess); err != nil || !ok {
			t.Fatalf("acquire %s: %v, %v", key, ok, err)
		}
		if ok, err := c.nodes[i].Acquire(ctx(t), key, []byte("other"), other); err != nil || ok {
			t.Fatalf("acquire %s held by another session: %v, %v", key, ok, err)
		}
	}
	if _, err := c.nodes[2].Acquire(ctx(t), "z/x", nil, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, kv.ErrSession) {
		t.Fatalf("acquire in range 1 by a session range 0 does not have: %v", err)
	}

	if err := c.nodes[2].DestroySession(ctx(t), sess); err != nil {
		t.Fatal(err)
	}
	destroyed := time.Now()
	for _, key := range []string{"a/lock", "z/lock"} {
		waitFor(t, 10*time.Second, key+" released", func() error {
			e, err := c.nodes[0].Get(ctx(t), key)
			if err != nil {
				return err
			}
			if e.Session != "" {
				return fmt.Errorf("held by %s", e.Session)
			}
			return nil
		})
	}
	// Lock-delay: the other session gets z/lock only once it has passed.
	waitFor(t, 10*time.Second, "z/lock taken by the other session", func() error {
		ok, err := c.nodes[1].Acquire(ctx(t), "z/lock", []byte("other"), other)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("refused")
		}
		return nil
	})
	if since := time.Since(destroyed); since < time.Second {
		t.Fatalf("z/lock taken %v after its session was destroyed, within its lock-delay", since)
	}
	if _, err := c.nodes[0].Acquire(ctx(t), "z/again", nil, sess); !errors.Is(err, kv.ErrSession) {
		t.Fatalf("acquire in range 1 by the destroyed session: %v", err)
	}
	waitFor(t, 10*time.Second, "no release left pending", func() error {
		p, err := c.nodes[0].group.FSM().PendingReleases()
		if err != nil || len(p) > 0 {
			return fmt.Errorf("%v pending, %v", p, err)
		}
		return nil
	})
}

// checkPrefix fails unless keys are the first len(keys) keys of the order
// TestBackupAcrossRangesIsOneState writes them in.
func checkPrefix(t *testing.T, what string, keys []string) {
	t.Helper()
	want := map[string]bool{}
	for i := range len(keys) {
		want[fmt.Sprintf("%c/%06d", "az"[i%2], i)] = true
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("%s holds %d keys but not the first %d written in order: %q is among them", what, len(keys), len(keys), k)
		}
	}
}

// A prefix kept whole stays in one range through the operator's splits;
// one a boundary already cuts cannot be kept whole.
func TestKeepWholeThroughSplits(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	if err := c.nodes[1].KeepWhole(ctx(t), "users/", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[2].SplitRange(ctx(t), "users/m/"); !errors.Is(err, kv.ErrInvalid) || !strings.Contains(err.Error(), "kept whole") {
		t.Fatalf("split inside a prefix kept whole: %v", err)
	}
	if _, err := c.nodes[2].SplitRange(ctx(t), "users/"); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[0].KeepWhole(ctx(t), "u", true); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("keeping whole a prefix a boundary cuts: %v", err)
	}
	if _, err := c.nodes[0].SplitRange(ctx(t), "users/x/"); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("split inside the prefix in the range it went to: %v", err)
	}
	if err := c.nodes[0].KeepWhole(ctx(t), "users/", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[0].SplitRange(ctx(t), "users/x/"); err != nil {
		t.Fatalf("split inside a prefix let go: %v", err)
	}
}

// A blocking query follows its keys through a split: waiting when the
// split moves them to a new range, it wakes for a write there.
func TestBlockingQueryFollowsASplit(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	mustSet(t, c.nodes[0], "w/a", "x")
	for _, q := range []kv.Query{{Kind: kv.ReadKeys, Key: "w/"}, {Kind: kv.ReadGet, Key: "w/z"}} {
		res, err := c.nodes[1].Read(ctx(t), q)
		if err != nil {
			t.Fatal(err)
		}
		q.MinIndex, q.Wait = res.Index, 20*time.Second
		woke := make(chan *kv.QueryResult, 1)
		go func() {
			r, err := c.nodes[1].Read(ctx(t), q)
			if err != nil {
				t.Error(err)
			}
			woke <- r
		}()
		waitFor(t, 10*time.Second, "the query to block", func() error {
			n := c.nodes[1].group.BlockingQueries()
			for _, g := range c.nodes[1].ranges.Groups() {
				n += g.BlockingQueries()
			}
			if n == 0 {
				return errors.New("not yet")
			}
			return nil
		})
		split := "w/m/"
		if q.Kind == kv.ReadGet {
			split = "w/y/"
		}
		if _, err := c.nodes[2].SplitRange(ctx(t), split); err != nil {
			t.Fatal(err)
		}
		mustSet(t, c.nodes[2], "w/z", "after the split")
		select {
		case r := <-woke:
			if r == nil || r.Index <= q.MinIndex {
				t.Fatalf("%v woke with %+v (held %d)", q.Kind, r, q.MinIndex)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: a write in the range its keys went to did not wake it", q.Kind)
		}
	}
}

// Locks in a backup restored into a cluster of several ranges keep their
// holders, wherever their keys land, and invalidating the holder releases
// them in every range.
func TestRestoredLocksAcrossRanges(t *testing.T) {
	src := newTestCluster(t, 1, nil)
	sess, err := src.nodes[0].CreateSession(ctx(t), kv.Session{Behavior: kv.BehaviorRelease, TTL: "60s"})
	if err != nil {
		t.Fatal(err)
	}
	locks := []string{"a/lock", "n/lock", "z/lock"}
	for _, key := range locks {
		if ok, err := src.nodes[0].Acquire(ctx(t), key, []byte("me"), sess); err != nil || !ok {
			t.Fatalf("acquire %s: %v, %v", key, ok, err)
		}
	}
	var backup bytes.Buffer
	if err := src.nodes[0].SaveSnapshot(ctx(t), &backup, false); err != nil {
		t.Fatal(err)
	}

	c := newTestCluster(t, 3, nil)
	for _, at := range []string{"m/", "y/"} {
		if _, err := c.nodes[0].SplitRange(ctx(t), at); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.nodes[1].RestoreSnapshot(ctx(t), bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, key := range locks {
		if e, err := c.nodes[2].Get(ctx(t), key); err != nil || e.Session != sess {
			t.Fatalf("%s after the restore: %+v, %v", key, e, err)
		}
	}
	if err := c.nodes[0].DestroySession(ctx(t), sess); err != nil {
		t.Fatal(err)
	}
	for _, key := range locks {
		waitFor(t, 10*time.Second, key+" released", func() error {
			e, err := c.nodes[2].Get(ctx(t), key)
			if err != nil {
				return err
			}
			if e.Session != "" {
				return fmt.Errorf("held by %s", e.Session)
			}
			return nil
		})
	}
}

// A node restarting after a restore keeps what came after the restore: the
// restored backup is raft's newest snapshot for a while, and restoring it
// again at start-up would put its keys back over a range split off since
// (whose own log does not have the writes that replaced them).
func TestRestartAfterRestoreKeepsLaterSplits(t *testing.T) {
	src := newTestCluster(t, 1, nil)
	mustSet(t, src.nodes[0], "z/1", "backup")
	var backup bytes.Buffer
	if err := src.nodes[0].SaveSnapshot(ctx(t), &backup, false); err != nil {
		t.Fatal(err)
	}
	c := newTestCluster(t, 3, nil)
	if _, err := c.nodes[0].SplitRange(ctx(t), "m/"); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[0].RestoreSnapshot(ctx(t), bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[0].SplitRange(ctx(t), "t/"); err != nil {
		t.Fatal(err)
	}
	mustSet(t, c.nodes[0], "z/1", "after")
	for i := range c.nodes {
		waitFor(t, 10*time.Second, "z/1 on every node", func() error {
			if got := mustGetValue(t, c.nodes[i], "z/1", Stale()); got != "after" {
				return fmt.Errorf("node %d: %q", i, got)
			}
			return nil
		})
	}
	for i := range c.nodes {
		c.stop(i)
		c.start(i)
	}
	for i := range c.nodes {
		waitFor(t, 20*time.Second, "z/1 after the restart", func() error {
			e, err := c.nodes[i].Get(ctx(t), "z/1", Stale())
			if err != nil {
				return err
			}
			if string(e.Value) != "after" {
				return fmt.Errorf("node %d: z/1 = %q after its restart", i, e.Value)
			}
			return nil
		})
	}
}
