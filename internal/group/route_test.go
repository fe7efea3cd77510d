package group

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// A forwarded write carries the generation of the range on the node that
// sent it. Behind the leader's: a key the range no longer holds is refused
// with the range as it is now, before it takes a log entry. Ahead of it
// (the sender applied a split the leader's replica has not yet): the
// leader waits for its replica before it judges the keys.
func TestForwardedWritesCarryTheirRoute(t *testing.T) {
	n := startNode(t, "n1", []uint64{0}, map[uint64]bool{0: true})
	g := n.groups[0]
	leaderOf(t, []*testNode{n}, 0)
	split := func(key string) {
		t.Helper()
		id, err := g.Propose(ctx(t), fsm.NewRangeIDEntry())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Propose(ctx(t), fsm.SplitEntry(fsm.Split{Key: key, NewID: id.Index, Replicas: []rangemap.Replica{{Node: "n1", Voter: true}}})); err != nil {
			t.Fatal(err)
		}
	}
	write := func(c context.Context, generation uint64, key string) error {
		_, err := g.PeerCalls().ApplyForwarded(c, generation, fsm.EncodeEntry(fsm.KVEntry(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: key, Value: []byte("v")}}})))
		return err
	}
	split("t/")
	old := g.FSM().Descriptor().Generation
	split("m/")
	if err := write(ctx(t), old, "p/1"); !errors.Is(err, kv.ErrRangeMoved) {
		t.Fatalf("a write routed by an older generation, for a key the range no longer holds: %v", err)
	}
	if err := write(ctx(t), old, "a/1"); err != nil {
		t.Fatalf("a write routed by an older generation, for a key the range still holds: %v", err)
	}

	// Ahead: the leader waits for its replica (a heartbeat timeout at
	// most: generations are a hint, the state machine checks every key).
	ahead := g.FSM().Descriptor().Generation + 1
	done := make(chan error, 1)
	go func() { done <- write(ctx(t), ahead, "e/1") }()
	waitFor(t, 10*time.Second, "the write to wait for the leader's replica", func() error {
		if _, _, err := g.FSM().Get("e/1"); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("applied before the leader's replica reached the sender's generation: %v", err)
		}
		return nil
	})
	split("f/") // the leader's replica reaches the sender's generation: e/1 is judged by ["", "f/")
	if err := <-done; err != nil {
		t.Fatalf("a write routed by a newer generation, once the leader's replica has it: %v", err)
	}
	began := time.Now()
	if err := write(ctx(t), g.FSM().Descriptor().Generation+5, "a/2"); err != nil || time.Since(began) > 10*time.Second {
		t.Fatalf("a write routed by a generation the leader never reaches: %v after %v", err, time.Since(began))
	}
}
