package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

func TestSnapshotSaveOnOneClusterRestoreOnAnother(t *testing.T) {
	a := newTestCluster(t, 3, nil)
	la := a.leader()
	want := map[string]string{}
	for i := range 300 {
		k, v := fmt.Sprintf("app/%03d", i), "value-"+strconv.Itoa(i)
		mustSet(t, a.nodes[la], k, v)
		want[k] = v
	}
	var snap bytes.Buffer
	if err := a.nodes[a.followers()[0]].SaveSnapshot(ctx(t), &snap, false); err != nil {
		t.Fatal(err)
	}

	b := newTestCluster(t, 3, nil)
	lb := b.leader()
	for i := range 50 {
		mustSet(t, b.nodes[lb], "b-only/"+strconv.Itoa(i), "gone after restore")
	}
	mustSet(t, b.nodes[lb], "app/000", "overwritten by restore")
	res, err := b.nodes[lb].Read(ctx(t), kv.Query{Kind: kv.ReadList})
	if err != nil {
		t.Fatal(err)
	}
	before := res.Index

	// Garbage is refused and changes nothing.
	if err := b.nodes[lb].RestoreSnapshot(ctx(t), bytes.NewReader([]byte("not a snapshot"))); err == nil {
		t.Fatal("garbage snapshot accepted")
	}
	// Restore through a follower: forwarded to the leader, installed everywhere.
	if err := b.nodes[b.followers()[1]].RestoreSnapshot(ctx(t), bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, s := range b.nodes {
		waitFor(t, 20*time.Second, "restored state on "+s.ID(), func() error {
			entries, err := s.List(context.Background(), "", Stale())
			if err != nil {
				return err
			}
			if len(entries) != len(want) {
				return fmt.Errorf("%d keys, want %d", len(entries), len(want))
			}
			for _, e := range entries {
				if want[e.Key] != string(e.Value) {
					return fmt.Errorf("%s = %q, want %q", e.Key, e.Value, want[e.Key])
				}
			}
			return nil
		})
		// Linearizable reads work after the restore, and query indexes
		// did not go backwards for this cluster's clients.
		res, err := s.Read(ctx(t), kv.Query{Kind: kv.ReadList, Key: ""})
		if err != nil {
			t.Fatal(err)
		}
		if res.Index < before {
			t.Fatalf("%s: query index went back from %d to %d", s.ID(), before, res.Index)
		}
	}
	mustSet(t, b.nodes[b.followers()[0]], "after-restore", "ok")
	if got := mustGetValue(t, b.nodes[b.followers()[1]], "after-restore"); got != "ok" {
		t.Fatalf("write after restore: %q", got)
	}
}
