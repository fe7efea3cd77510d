package peerrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeNode struct {
	leader     bool
	asker      *Voucher
	generation uint64 // of the last forwarded write
}

func (f *fakeNode) ApplyForwarded(ctx context.Context, generation uint64, command []byte) (*kv.Result, error) {
	f.generation = generation
	cmd, err := fsm.DecodeCommand(command)
	if err == nil {
		err = cmd.Validate(1024)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kv.ErrInvalid, err)
	}
	if !f.leader {
		return nil, kv.ErrNoLeader
	}
	return &kv.Result{Index: 9, OK: true}, nil
}
func (f *fakeNode) ReadIndex(ctx context.Context, asker *Voucher) (uint64, error) {
	f.asker = asker
	return 42, nil
}
func (f *fakeNode) Term(id string) (uint64, error) {
	if id != "n2" {
		return 0, kv.ErrNoLeader
	}
	return 3, nil
}
func (f *fakeNode) ChangeMembership(ctx context.Context, req Membership) error {
	if req.Op != "join" || !req.NonVoter {
		return kv.ErrInvalid
	}
	return nil
}
func (f *fakeNode) Restore(ctx context.Context, body io.Reader) error {
	b, _ := io.ReadAll(body)
	if string(b) != "snapshot" {
		return kv.ErrInvalid
	}
	return nil
}
func (f *fakeNode) Renew(ctx context.Context, id string) (kv.Session, error) {
	if id == "gone" {
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id 'gone' not found")
	}
	return kv.Session{ID: id, TTL: "10s"}, nil
}
func (f *fakeNode) Stats() autopilot.Stats { return autopilot.Stats{LastTerm: 3, LastIndex: 40} }
func (f *fakeNode) AutopilotHealth() (kv.AutopilotHealth, error) {
	return kv.AutopilotHealth{Healthy: true, FailureTolerance: 1}, nil
}
func (f *fakeNode) MaxCommandBytes() int { return 64 << 10 }

// groups serves node as group 0 and other as group 7.
func groups(node, other *fakeNode) Groups {
	return func(group uint64) (Node, error) {
		switch group {
		case 0:
			return node, nil
		case 7:
			return other, nil
		}
		return nil, fmt.Errorf("%w: no group %d here", kv.ErrNoLeader, group)
	}
}

// Every call round-trips its answer, and errors come back as the same
// sentinels.
func TestProtocol(t *testing.T) {
	node := &fakeNode{leader: true}
	other := &fakeNode{leader: true}
	srv := httptest.NewServer(Handler(groups(node, other), time.Second, time.Second))
	defer srv.Close()
	c := NewClient((&net.Dialer{}).DialContext, func() string { return "" })
	defer c.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	if res, err := c.Apply(ctx, addr, 5, fsm.EncodeCommand(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "k", Value: []byte("v")}}})); err != nil || res.Index != 9 || node.generation != 5 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if _, err := c.Apply(ctx, addr, 0, fsm.EncodeCommand(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: ""}}})); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("an invalid forwarded command: %v", err)
	}
	node.leader = false
	if _, err := c.Apply(ctx, addr, 0, fsm.EncodeCommand(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "k"}}})); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("apply on a non-leader: %v", err)
	}
	if idx, err := c.ReadIndex(ctx, addr, Voucher{ID: "n3", Term: 5}); err != nil || idx != 42 || node.asker == nil || *node.asker != (Voucher{"n3", 5}) {
		t.Fatalf("read index: %d %v %+v", idx, err, node.asker)
	}
	if term, err := c.Term(ctx, addr, "n2"); err != nil || term != 3 {
		t.Fatalf("term: %d %v", term, err)
	}
	if _, err := c.Term(ctx, addr, "n9"); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a probe for another server: %v", err)
	}
	if err := c.Membership(ctx, addr, Membership{Op: "join", ID: "r1", Address: "x:1", NonVoter: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(ctx, addr, strings.NewReader("snapshot"), 8); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Renew(ctx, addr, "abc"); err != nil || s.ID != "abc" {
		t.Fatalf("renew: %+v %v", s, err)
	}
	if _, err := c.Renew(ctx, addr, "gone"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("renew of a gone session: %v", err)
	}
	if st, err := c.Stats(ctx, addr); err != nil || st.LastIndex != 40 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	if h, err := c.AutopilotHealth(ctx, addr); err != nil || !h.Healthy {
		t.Fatalf("health: %+v %v", h, err)
	}
	// Calls name their group: group 7's node answers group 7's client.
	if idx, err := c.Group(7).ReadIndex(ctx, addr, Voucher{ID: "n4", Term: 6}); err != nil || idx != 42 || other.asker == nil || other.asker.ID != "n4" || node.asker.ID != "n3" {
		t.Fatalf("group 7's read index: %d %v, asked %+v (group 0 asked %+v)", idx, err, other.asker, node.asker)
	}
	if _, err := c.Group(8).Stats(ctx, addr); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a group the node does not run: %v", err)
	}
	// Nothing listening: not sent, so not applied.
	srv.Close()
	c.Close() // no pooled connection left to fail after writing
	if _, err := c.Apply(ctx, addr, 0, fsm.EncodeCommand(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "k"}}})); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("apply to a closed server: %v", err)
	}
}
