package group

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// rpcNode is the node as the node-to-node protocol's server sees it
// (peerrpc.Node): each request runs here or is refused, never forwarded.
type rpcNode Group

func (n *rpcNode) store() *Group { return (*Group)(n) }

// ApplyForwarded is the second of the two places a write is checked: on
// receipt from a peer (the first is Apply, where it enters the cluster).
func (n *rpcNode) ApplyForwarded(ctx context.Context, command []byte) (*kv.Result, error) {
	s := n.store()
	cmd, err := fsm.DecodeCommand(command)
	if err == nil {
		err = cmd.Validate(s.cfg.MaxValueBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: forwarded command: %v", kv.ErrInvalid, err)
	}
	if !s.IsLeader() {
		return nil, fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr)
	}
	return s.applyLocal(ctx, cmd)
}

func (n *rpcNode) ReadIndex(ctx context.Context, asker *peerrpc.Voucher) (uint64, error) {
	return n.store().leaderReadIndex(ctx, asker)
}

// Term answers the leader's leadership probe (see verifier). It reads
// raft's term without going through raft's loops, so it stays fast while
// this node is storing log entries. A node that is not the server the
// leader asked for (a new node on a departed member's address) must not
// answer for it.
func (n *rpcNode) Term(id string) (uint64, error) {
	s := n.store()
	if id != s.id {
		return 0, fmt.Errorf("%w: probe for %q reached %q", kv.ErrNoLeader, id, s.id)
	}
	return s.raft.CurrentTerm(), nil
}

func (n *rpcNode) ChangeMembership(ctx context.Context, req peerrpc.Membership) error {
	return n.store().changeMembershipLocal(ctx, req)
}

func (n *rpcNode) Restore(ctx context.Context, body io.Reader) error {
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

func (n *rpcNode) Renew(ctx context.Context, id string) (kv.Session, error) {
	return n.store().renewLocal(ctx, id)
}

func (n *rpcNode) Stats() autopilot.Stats { return n.store().localStats() }

func (n *rpcNode) AutopilotHealth() (kv.AutopilotHealth, error) { return n.store().localHealth() }

func (n *rpcNode) MaxCommandBytes() int { return n.cfg.MaxCommandBytes() }

// Peer is the group as the node's peer calls and streams see it.
func (g *Group) Peer() peerrpc.Node { return (*rpcNode)(g) }
