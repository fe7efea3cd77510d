package group

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// ACLs: policies and tokens are replicated FSM state; this file proposes
// changes to them and reads them back. Who may do what is internal/acl's
// business, asked by the HTTP API.

// The FSM tells the resolver whether the cluster was bootstrapped, so that
// a secret is refused in Consul's words for a cluster that was not.
var _ acl.BootstrapSource = (*fsm.FSM)(nil)

// ACLsEnabled reports whether requests are authorised by tokens.
func (s *Group) ACLsEnabled() bool { return s.resolver != nil }

// ResolveToken is the identity of secret ("" : the anonymous token).
func (s *Group) ResolveToken(secret string) (*acl.Identity, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	return s.resolver.Resolve(secret)
}

// ApplyACL proposes an ACL change (forwarded to the leader like any write)
// and waits until this node has applied it too, so that the caller's next
// request here sees it. The result's first entry holds the stored record
// as JSON.
func (s *Group) ApplyACL(ctx context.Context, c *acl.Command) (*kv.Result, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	res, err := s.Apply(ctx, &kv.Command{Ops: []kv.Op{{Verb: kv.VerbACL, Value: fsm.EncodeACLCommand(c)}}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := s.waitApplied(ctx, res.Index); err != nil {
		return nil, fmt.Errorf("%w: applied at %d, not yet here: %v", kv.ErrUnknownOutcome, res.Index, err)
	}
	return res, nil
}

// ACLState reads policies and tokens; linearizable unless stale.
func (s *Group) ACLState(ctx context.Context, stale bool) (*fsm.FSM, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	if !stale {
		if err := s.linearize(ctx); err != nil {
			return nil, err
		}
	}
	return s.fsm, nil
}

// leadACLs is the new leader's ACL work once everything committed is
// applied: choose the node-to-node credential if none exists yet, and
// make sure the -acl-initial-management token exists.
func (s *Group) leadACLs() {
	if s.resolver == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ApplyTimeout)
	defer cancel()
	if secret, err := s.fsm.PeerSecret(); err == nil && secret == "" {
		if _, err := s.applyLocal(ctx, aclCommand(&acl.Command{Op: acl.OpPeerSecret, ID: uuid.NewString()})); err != nil {
			s.logger.Warn("cannot record the node-to-node credential", "err", err)
		}
	}
	if secret := s.cfg.ACLInitialManagement; secret != "" {
		if t, err := s.fsm.ACLTokenBySecret(secret); err == nil && t == nil {
			_, err := s.applyLocal(ctx, aclCommand(&acl.Command{Op: acl.OpInitialManagement,
				Token: &acl.Token{AccessorID: uuid.NewString(), SecretID: secret, Description: "Initial Management Token"}}))
			if err != nil {
				s.logger.Warn("cannot create the initial management token", "err", err)
			} else {
				s.logger.Info("created the initial management token")
			}
		}
	}
}

func aclCommand(c *acl.Command) *kv.Command {
	return &kv.Command{Ops: []kv.Op{{Verb: kv.VerbACL, Value: fsm.EncodeACLCommand(c)}}}
}

// PeerSecret is the cluster's node-to-node credential ("" while none is
// chosen), and whether this node demands it (ACLs on).
func (g *Group) PeerSecret() (secret string, required bool) {
	secret, _ = g.fsm.PeerSecret()
	return secret, g.resolver != nil
}

// AuthGeneration changes with the membership and the ACL state, on which
// peer authentication depends (a restore sets both to the snapshot's).
func (g *Group) AuthGeneration() [2]uint64 {
	return [2]uint64{g.fsm.ConfigIndex(), g.fsm.ACLIndex()}
}
