package group

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

func TestLeadershipProbe(t *testing.T) {
	nodes := []*testNode{
		startNode(t, "n1", []uint64{0}, map[uint64]bool{0: true}),
		startNode(t, "n2", []uint64{0}, nil),
		startNode(t, "n3", []uint64{0}, nil),
	}
	joinAll(t, nodes, 0)
	li := leaderOf(t, nodes, 0)
	l := nodes[li].groups[0]
	f := nodes[(li+1)%3].groups[0]
	term := l.raft.CurrentTerm()

	got, err := l.peers.Term(ctx(t), f.addr, f.id)
	if err != nil || got != term {
		t.Fatalf("probe of a follower: term %d, %v; want %d", got, err, term)
	}
	// A node answering on an address the leader knows under another ID (a
	// departed member's address reused) must not answer for it.
	if _, err := l.peers.Term(ctx(t), f.addr, "someone-else"); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("probe for another ID: %v, want no_leader", err)
	}

	if err := l.verifier.verify(ctx(t), term, nil); err != nil {
		t.Fatalf("round in a healthy cluster: %v", err)
	}
	// A voter's voucher completes a three-voter quorum; a voter already in a
	// later term proves this leader deposed.
	if err := l.verifier.verify(ctx(t), term, &peerrpc.Voucher{ID: f.id, Term: term}); err != nil {
		t.Fatalf("voucher of a voter: %v", err)
	}
	if err := l.verifier.verify(ctx(t), term, &peerrpc.Voucher{ID: f.id, Term: term + 1}); err == nil {
		t.Fatal("a voter in a later term did not stop the read")
	}

	// With both followers gone there is no quorum, whatever the leader thinks.
	for i, n := range nodes {
		if i != li {
			n.close()
		}
	}
	if err := l.verifier.verify(ctx(t), term, nil); err == nil {
		t.Fatal("round without followers confirmed leadership")
	}
}
