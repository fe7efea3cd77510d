package group

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// PeerCalls is the group as the node-to-node protocol's server sees it:
// every call of peerrpc.Node but Renew, which is the sessions' (the node
// puts the two together). Each runs here or is refused, never forwarded.
type PeerCalls Group

// PeerCalls are the node-to-node calls this group answers.
func (g *Group) PeerCalls() *PeerCalls { return (*PeerCalls)(g) }

func (n *PeerCalls) store() *Group { return (*Group)(n) }

// ApplyForwarded is the second of the two places a write is checked: on
// receipt from a peer (the first is Apply, where it enters the cluster).
func (n *PeerCalls) ApplyForwarded(ctx context.Context, generation uint64, command []byte) (*kv.Result, error) {
	s := n.store()
	e, err := fsm.DecodeEntry(command)
	if err != nil {
		return nil, fmt.Errorf("%w: forwarded entry: %v", kv.ErrInvalid, err)
	}
	if err := e.Validate(s.limits()); err != nil {
		return nil, err
	}
	if !s.IsLeader() {
		return nil, fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	s.checkRoute(ctx, generation)
	return s.applyLocal(ctx, e)
}

func (n *PeerCalls) ReadIndex(ctx context.Context, asker *peerrpc.Voucher) (uint64, error) {
	return n.store().leaderReadIndex(ctx, asker)
}

// Term answers the leader's leadership probe (see verifier). It reads
// raft's term without going through raft's loops, so it stays fast while
// this node is storing log entries. A node that is not the server the
// leader asked for (a new node on a departed member's address) must not
// answer for it.
func (n *PeerCalls) Term(id string) (uint64, error) {
	s := n.store()
	if id != s.id {
		return 0, fmt.Errorf("%w: probe for %q reached %q", kv.ErrNoLeader, id, s.id)
	}
	return s.raft.CurrentTerm(), nil
}

func (n *PeerCalls) ChangeMembership(ctx context.Context, req peerrpc.Membership) error {
	return n.store().Membership().changeMembershipLocal(ctx, req)
}

func (n *PeerCalls) Restore(ctx context.Context, body io.Reader) error {
	s := n.store()
	if !s.IsLeader() {
		return fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	f, size, err := s.spoolSnapshot(body)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return s.restoreLocal(ctx, f, size)
}

func (n *PeerCalls) Stats() autopilot.Stats { return n.store().localStats() }

func (n *PeerCalls) AutopilotHealth() (kv.AutopilotHealth, error) {
	return n.store().Membership().localHealth()
}

func (n *PeerCalls) MaxCommandBytes() int { return n.cfg.MaxCommandBytes() }
