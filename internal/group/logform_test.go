package group

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fsm"
)

// The typed form is written only once every other server reported
// reading it; a server that reported nothing, or an older form, keeps the
// legacy form.
func TestTypedEntriesWaitForEveryServer(t *testing.T) {
	var f entryFormats
	servers := []string{"n1", "n2", "n3"}
	if !f.allRead([]string{"n1"}, "n1", fsm.EntryVersion) {
		t.Fatal("a lone server waits for itself")
	}
	if f.allRead(servers, "n1", fsm.EntryVersion) {
		t.Fatal("typed entries before any report")
	}
	f.report("n2", fsm.EntryVersion)
	f.report("n3", 0) // a release before typed entries
	if f.allRead(servers, "n1", fsm.EntryVersion) {
		t.Fatal("typed entries with an older server in the configuration")
	}
	f.report("n3", fsm.EntryVersion)
	if !f.allRead(servers, "n1", fsm.EntryVersion) {
		t.Fatal("legacy entries although every server reads typed ones")
	}
	if f.unheard(servers, "n1") {
		t.Fatal("a server that reported counts as unheard")
	}
	if !f.unheard(append(servers, "n4"), "n1") {
		t.Fatal("a server that never reported counts as heard")
	}

	// Once the log holds the version, a server not heard from (down, cut
	// off) does not hold it back; one heard reading less does.
	v := fsm.EntryVersion
	if f.mayWrite(append(servers, "n4"), "n1", v, v-1) {
		t.Fatal("typed entries with a server unheard and the log below the version")
	}
	if !f.mayWrite(append(servers, "n4"), "n1", v, v) {
		t.Fatal("the log holds the version, yet a server unheard holds it back")
	}
	f.report("n4", v-1)
	if f.mayWrite(append(servers, "n4"), "n1", v, v) {
		t.Fatal("typed entries although a server reported reading less")
	}
}

// In a cluster of this release, the leader soon writes the typed form (its
// autopilot gathers every server's EntryVersion), and every node applies it.
func TestLeaderWritesTypedEntriesOnceAllRead(t *testing.T) {
	nodes := []*testNode{
		startNode(t, "n1", []uint64{0}, map[uint64]bool{0: true}),
		startNode(t, "n2", []uint64{0}, nil),
		startNode(t, "n3", []uint64{0}, nil),
	}
	joinAll(t, nodes, 0)
	waitFor(t, 20*time.Second, "a replica mark written in the typed form", func() error {
		l := nodes[leaderOf(t, nodes, 0)].groups[0]
		res, err := l.ProposeHere(ctx(t), fsm.ReplicaMarkEntry("r1", true))
		if err != nil {
			return err
		}
		var entry raft.Log
		if err := l.logs.GetLog(res.Index, &entry); err != nil {
			return err
		}
		if entry.Data[0] != byte(fsm.KindACL.MinVersion()) {
			return errors.New("written in the legacy form")
		}
		return nil
	})
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "the mark applied on "+n.node.ID(), func() error {
			if ok, err := n.groups[0].fsm.ReadReplica("r1"); err != nil || !ok {
				return errors.New("not yet")
			}
			return nil
		})
	}
}

// Once the log carries an entry of a version, a new leader writes entries
// of that version at once, though it cannot hear every server: here one is
// down. (Before, it refused them for as long as the server stayed away: a
// split, or a session's release in the other ranges, waited for it; the
// robustness scenario splits/during-faults found it.)
func TestNewLeaderWritesTheLogsVersionWithAServerDown(t *testing.T) {
	nodes := []*testNode{
		startNode(t, "n1", []uint64{0}, map[uint64]bool{0: true}),
		startNode(t, "n2", []uint64{0}, nil),
		startNode(t, "n3", []uint64{0}, nil),
	}
	joinAll(t, nodes, 0)
	waitFor(t, 20*time.Second, "a new range ID, once every server is heard", func() error {
		_, err := nodes[leaderOf(t, nodes, 0)].groups[0].ProposeHere(ctx(t), fsm.NewRangeIDEntry())
		return err
	})
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "the log's version on "+n.node.ID(), func() error {
			if v := n.groups[0].fsm.LogVersion(); v < fsm.KindNewRangeID.MinVersion() {
				return fmt.Errorf("version %d", v)
			}
			return nil
		})
	}
	l := leaderOf(t, nodes, 0)
	down, next := (l+1)%3, (l+2)%3
	nodes[down].close()
	moveLeadership(t, nodes, 0, l, next)
	if _, err := nodes[next].groups[0].ProposeHere(ctx(t), fsm.NewRangeIDEntry()); err != nil {
		t.Fatalf("a new leader that cannot hear %s: %v", nodes[down].node.ID(), err)
	}
}
