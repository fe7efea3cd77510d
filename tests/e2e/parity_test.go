package e2e

import (
	"bytes"
	"fmt"
	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

func TestTxnThroughConsulClient(t *testing.T) {
	c := startCluster(t, 3)
	_, followers := leaderAndFollowers(c)
	kvc := client(t, followers[0].Addr).KV()

	ok, resp, _, err := kvc.Txn(consul.KVTxnOps{
		{Verb: consul.KVSet, Key: "t/a", Value: []byte("1")},
		{Verb: consul.KVSet, Key: "t/b", Value: []byte("2"), Flags: 9},
		{Verb: consul.KVGet, Key: "t/a"},
		{Verb: consul.KVGetTree, Key: "t/"},
	}, nil)
	if err != nil || !ok || len(resp.Results) != 5 {
		t.Fatalf("txn: ok=%v results=%d err=%v", ok, len(resp.Results), err)
	}
	a, _, _ := kvc.Get("t/a", nil)
	b, _, _ := kvc.Get("t/b", nil)
	if a == nil || b == nil || a.ModifyIndex != b.ModifyIndex {
		t.Fatalf("both writes must come from one raft entry: %+v %+v", a, b)
	}

	// Every check verb rolls the whole transaction back.
	checks := map[string]*consul.KVTxnOp{
		"cas":              {Verb: consul.KVCAS, Key: "t/a", Value: []byte("x"), Index: a.ModifyIndex + 100},
		"check-index":      {Verb: consul.KVCheckIndex, Key: "t/a", Index: a.ModifyIndex + 100},
		"check-not-exists": {Verb: consul.KVCheckNotExists, Key: "t/a"},
		"delete-cas":       {Verb: consul.KVDeleteCAS, Key: "t/a", Index: a.ModifyIndex + 100},
		"get":              {Verb: consul.KVGet, Key: "t/missing"},
	}
	for name, check := range checks {
		ok, resp, _, err := kvc.Txn(consul.KVTxnOps{
			{Verb: consul.KVSet, Key: "t/rollback-" + name, Value: []byte("x")},
			{Verb: consul.KVDelete, Key: "t/b"},
			check,
		}, nil)
		if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 2 {
			t.Fatalf("%s: ok=%v resp=%+v err=%v", name, ok, resp, err)
		}
		if p, _, _ := kvc.Get("t/rollback-"+name, nil); p != nil {
			t.Fatalf("%s: the set before the failed check was applied", name)
		}
		if p, _, _ := kvc.Get("t/b", nil); p == nil {
			t.Fatalf("%s: the delete before the failed check was applied", name)
		}
	}

	// An op that cannot apply is Consul's 409 with that op's error (consul/api
	// reads it as ok=false, not an error); nothing before it applied.
	ok, resp, _, err = kvc.Txn(consul.KVTxnOps{
		{Verb: consul.KVSet, Key: "t/before-lock", Value: []byte("x")},
		{Verb: consul.KVLock, Key: "t/lock"},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 || resp.Errors[0].What != "missing session" {
		t.Fatalf("lock without a session: ok=%v resp=%+v err=%v", ok, resp, err)
	}
	if p, _, _ := kvc.Get("t/before-lock", nil); p != nil {
		t.Fatal("the set before a lock without a session was applied")
	}

	// 129 operations: 413 (Consul 1.14+ allows 128). Malformed JSON: 400.
	ops := make(consul.KVTxnOps, 129)
	for i := range ops {
		ops[i] = &consul.KVTxnOp{Verb: consul.KVSet, Key: fmt.Sprintf("t/%d", i)}
	}
	if _, _, _, err := kvc.Txn(ops, nil); err == nil {
		t.Fatal("129 ops accepted")
	}
	body129 := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"set","Key":"t/x"}},`, 129), ",") + "]"
	if r := put(t, "http://"+followers[1].Addr+"/v1/txn", body129, nil); r.StatusCode != 413 {
		t.Fatalf("129 ops: status %d, want 413", r.StatusCode)
	}
	resp400 := put(t, "http://"+followers[1].Addr+"/v1/txn", `[{"KV":{"Verb":"set"`, nil)
	if resp400.StatusCode != 400 {
		t.Fatalf("malformed txn: %d", resp400.StatusCode)
	}
	// A read-only transaction may be served stale, without a leader round.
	ok, resp, _, err = kvc.Txn(consul.KVTxnOps{{Verb: consul.KVGet, Key: "t/a"}}, &consul.QueryOptions{AllowStale: true})
	if err != nil || !ok || string(resp.Results[0].Value) != "1" {
		t.Fatalf("stale read-only txn: %v %+v %v", ok, resp, err)
	}
}

func put(t *testing.T, url, body string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// blockingResult is what a background blocking query returned.
type blockingResult struct {
	index uint64
	err   error
}

func TestBlockingQueriesThroughConsulClient(t *testing.T) {
	c := startCluster(t, 3)
	_, followers := leaderAndFollowers(c)
	watcher := client(t, followers[0].Addr).KV()
	writer := client(t, followers[1].Addr).KV()
	mustPut := func(k, v string) {
		if _, err := writer.Put(&consul.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	mustPut("w/key", "0")
	mustPut("w/dir/a", "0")
	mustPut("other", "0")

	type query func(index uint64, wait time.Duration) (uint64, error)
	get := func(key string) query {
		return func(index uint64, wait time.Duration) (uint64, error) {
			_, m, err := watcher.Get(key, &consul.QueryOptions{WaitIndex: index, WaitTime: wait})
			if err != nil {
				return 0, err
			}
			return m.LastIndex, nil
		}
	}
	list := func(prefix string) query {
		return func(index uint64, wait time.Duration) (uint64, error) {
			_, m, err := watcher.List(prefix, &consul.QueryOptions{WaitIndex: index, WaitTime: wait})
			if err != nil {
				return 0, err
			}
			return m.LastIndex, nil
		}
	}
	keys := func(prefix string) query {
		return func(index uint64, wait time.Duration) (uint64, error) {
			_, m, err := watcher.Keys(prefix, "/", &consul.QueryOptions{WaitIndex: index, WaitTime: wait})
			if err != nil {
				return 0, err
			}
			return m.LastIndex, nil
		}
	}
	// Each case: a query, and a change that must wake it.
	cases := []struct {
		name   string
		q      query
		change func()
	}{
		{"get/set", get("w/key"), func() { mustPut("w/key", "1") }},
		{"get/cas", get("w/key"), func() {
			p, _, _ := writer.Get("w/key", nil)
			if ok, _, err := writer.CAS(&consul.KVPair{Key: "w/key", Value: []byte("2"), ModifyIndex: p.ModifyIndex}, nil); !ok || err != nil {
				t.Errorf("cas: %v %v", ok, err)
			}
		}},
		{"get/delete", get("w/key"), func() { writer.Delete("w/key", nil) }},
		{"get/create", get("w/key"), func() { mustPut("w/key", "back") }},
		{"list/set", list("w/dir/"), func() { mustPut("w/dir/b", "1") }},
		{"list/delete", list("w/dir/"), func() { writer.Delete("w/dir/a", nil) }},
		{"keys/delete-tree", keys("w/"), func() { writer.DeleteTree("w/dir/", nil) }},
		{"list/txn", list("w/"), func() {
			writer.Txn(consul.KVTxnOps{{Verb: consul.KVSet, Key: "w/txn", Value: []byte("1")}}, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start, err := tc.q(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan blockingResult, 1)
			go func() {
				idx, err := tc.q(start, time.Minute)
				done <- blockingResult{idx, err}
			}()
			// A write elsewhere must not wake it (it is still blocked after it).
			mustPut("other", time.Now().String())
			select {
			case r := <-done:
				t.Fatalf("woke on an unrelated write: %+v", r)
			default:
			}
			tc.change()
			select {
			case r := <-done:
				if r.err != nil || r.index <= start {
					t.Fatalf("woke with index %d (started at %d): %v", r.index, start, r.err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("did not wake after a change to its result")
			}
		})
	}

	// A blocking query with nothing to wake it answers after its wait with
	// the same index.
	_, meta, err := watcher.Get("w/key", nil)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, meta2, err := watcher.Get("w/key", &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 500 * time.Millisecond})
	if err != nil || meta2.LastIndex != meta.LastIndex {
		t.Fatalf("timed-out query: %+v %v", meta2, err)
	}
	if waited := time.Since(began); waited < 500*time.Millisecond {
		t.Fatalf("answered after %s, before its wait", waited)
	}
}

func TestIdempotentWritesApplyOnce(t *testing.T) {
	c := startCluster(t, 3)
	leader, followers := leaderAndFollowers(c)
	url := func(p *proccluster.Proc, key string) string { return "http://" + p.Addr + "/v1/kv/" + key }
	keyed := func(k string) http.Header { return http.Header{"Idempotency-Key": {k}} }
	get := func(key string) string {
		pair, _, err := client(t, leader.Addr).KV().Get(key, nil)
		if err != nil || pair == nil {
			t.Fatalf("get %s: %+v %v", key, pair, err)
		}
		return string(pair.Value)
	}
	// Pattern: keyed write of v1, an unkeyed write of v2, then the keyed write
	// replayed. Applied once, the key holds v2; applied twice, v1.
	scenario := func(name string, first, replay *proccluster.Proc, between func()) {
		k := "idem/" + name
		if r := put(t, url(first, k), "v1", keyed("req-"+name)); r.StatusCode != 200 {
			t.Fatalf("%s: first write %d", name, r.StatusCode)
		}
		if r := put(t, url(first, k), "v2", nil); r.StatusCode != 200 {
			t.Fatalf("%s: second write %d", name, r.StatusCode)
		}
		if between != nil {
			between()
		}
		// A 503 (around a leader change) means "not applied, retry", as a
		// client would: the key still makes every attempt count once.
		testsupport.WaitFor(t, 20*time.Second, name+": the replay answered", func() error {
			switch r := put(t, url(replay, k), "v1", keyed("req-"+name)); r.StatusCode {
			case 200:
				return nil
			case http.StatusServiceUnavailable:
				return fmt.Errorf("503")
			default:
				t.Fatalf("%s: replay %d", name, r.StatusCode)
				return nil
			}
		})
		if got := get(k); got != "v2" {
			t.Fatalf("%s: the replay applied again (value %q)", name, got)
		}
	}
	scenario("same-node", followers[0], followers[0], nil)
	scenario("two-nodes", followers[0], followers[1], nil)
	scenario("leader-change", leader, leader, func() {
		if _, err := client(t, leader.Addr).Operator().RaftLeaderTransfer("", nil); err != nil {
			t.Fatal(err)
		}
		testsupport.WaitFor(t, 20*time.Second, "a new leader", func() error {
			l, err := client(t, followers[0].Addr).Status().Leader()
			if err != nil || l == "" || l == leader.Addr {
				return fmt.Errorf("leader %q %v", l, err)
			}
			return nil
		})
	})
	// The replay gets the first answer: a CAS that won still says true.
	k := "idem/cas-answer"
	put(t, url(leader, k)+"?cas=0", "x", keyed("req-cas"))
	resp, err := http.DefaultClient.Do(mustReq(t, http.MethodPut, url(followers[1], k)+"?cas=0", "x", keyed("req-cas")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "true" {
		t.Fatalf("replayed CAS answered %q, the first answer was true", body)
	}
	// The same key with another request is refused, and applies nothing.
	if r := put(t, url(followers[0], k), "other", keyed("req-cas")); r.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("a reused key with a different body: %d, want 422", r.StatusCode)
	}
	if got := get(k); got != "x" {
		t.Fatalf("the refused request changed the key to %q", got)
	}
}

func mustReq(t *testing.T, method, url, body string, h http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	return req
}

func TestSnapshotSaveAndRestoreAcrossClusters(t *testing.T) {
	a := startCluster(t, 3)
	want := map[string]string{}
	ka := client(t, a.Procs[1].Addr).KV()
	for i := range 200 {
		k, v := fmt.Sprintf("snap/%03d", i), fmt.Sprintf("value-%d", i)
		if _, err := ka.Put(&consul.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	rc, _, err := client(t, a.Procs[2].Addr).Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}

	b := startCluster(t, 3)
	kb := client(t, b.Procs[0].Addr).KV()
	kb.Put(&consul.KVPair{Key: "only-in-b", Value: []byte("gone after restore")}, nil)
	kb.Put(&consul.KVPair{Key: "snap/000", Value: []byte("overwritten")}, nil)
	if err := client(t, b.Procs[1].Addr).Snapshot().Restore(nil, bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	for _, p := range b.Procs {
		pairs, _, err := client(t, p.Addr).KV().List("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(pairs) != len(want) {
			t.Fatalf("%s has %d keys after restore, want %d", p.ID, len(pairs), len(want))
		}
		for _, pair := range pairs {
			if want[pair.Key] != string(pair.Value) {
				t.Fatalf("%s: %s = %q, want %q", p.ID, pair.Key, pair.Value, want[pair.Key])
			}
		}
	}
}
