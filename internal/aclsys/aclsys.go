// Package aclsys is the ACL system of a raft group: it proposes changes
// to policies and tokens (replicated state in the FSM), resolves tokens to
// identities for the HTTP API, makes the new leader's ACL bootstrap (the
// node-to-node credential, the -acl-initial-management token), and says
// who counts as a peer without TLS. Who may do what is package acl's
// business; this package attaches to the group through its hooks.
package aclsys

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/internal/group"
	"github.com/raftkv/raftkv/kv"
)

// The FSM tells the resolver whether the cluster was bootstrapped, so that
// a secret is refused in Consul's words for a cluster that was not.
var _ acl.BootstrapSource = (*fsm.FSM)(nil)

// Group is what ACLs need of a raft group (package group).
type Group interface {
	Attach(group.Hooks)
	Logger() *slog.Logger
	FSM() *fsm.FSM
	Propose(ctx context.Context, e *fsm.Entry) (*kv.Result, error)
	ProposeHere(ctx context.Context, e *fsm.Entry) (*kv.Result, error)
	WaitApplied(ctx context.Context, index uint64) error
	Linearize(ctx context.Context) error
	Members() []string
}

// Config turns ACLs on or off.
type Config struct {
	// DefaultPolicy is "allow" or "deny" (what a token's policies do not
	// speak of); "" turns ACLs off.
	DefaultPolicy string
	// InitialManagement is a SecretID the first leader makes a management
	// token of.
	InitialManagement string
}

// System is the ACLs of one group.
type System struct {
	g        Group
	cfg      Config
	resolver *acl.Resolver // nil when ACLs are off
	logger   *slog.Logger
}

// Attach starts the ACLs of g.
func Attach(g Group, cfg Config) *System {
	s := &System{g: g, cfg: cfg, logger: g.Logger()}
	if cfg.DefaultPolicy != "" {
		s.resolver = acl.NewResolver(g.FSM(), cfg.DefaultPolicy == "allow")
	}
	g.Attach(group.Hooks{Led: s.lead, Restored: s.lead})
	return s
}

// ACLsEnabled reports whether requests are authorised by tokens.
func (s *System) ACLsEnabled() bool { return s.resolver != nil }

// ResolveToken is the identity of secret ("" : the anonymous token).
func (s *System) ResolveToken(secret string) (*acl.Identity, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	return s.resolver.Resolve(secret)
}

// ApplyACL proposes an ACL change (forwarded to the leader like any write)
// and waits until this node has applied it too, so that the caller's next
// request here sees it. The result's first entry holds the stored record
// as JSON.
func (s *System) ApplyACL(ctx context.Context, c *acl.Command) (*kv.Result, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	res, err := s.g.Propose(ctx, fsm.ACLEntry(c))
	if err != nil {
		return nil, err
	}
	if err := s.g.WaitApplied(ctx, res.Index); err != nil {
		return nil, fmt.Errorf("%w: applied at %d, not yet here: %v", kv.ErrUnknownOutcome, res.Index, err)
	}
	return res, nil
}

// ACLState reads policies and tokens; linearizable unless stale.
func (s *System) ACLState(ctx context.Context, stale bool) (*fsm.FSM, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	if !stale {
		if err := s.g.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	return s.g.FSM(), nil
}

// lead is the new leader's ACL work once everything committed is applied
// (and again after a restore, whose snapshot may come from a cluster
// without them): choose the node-to-node credential if none exists yet,
// and make sure the -acl-initial-management token exists.
func (s *System) lead() {
	if s.resolver == nil {
		return
	}
	ctx := context.Background()
	fsmState := s.g.FSM()
	if secret, err := fsmState.PeerSecret(); err == nil && secret == "" {
		if _, err := s.g.ProposeHere(ctx, fsm.ACLEntry(&acl.Command{Op: acl.OpPeerSecret, ID: uuid.NewString()})); err != nil {
			s.logger.Warn("cannot record the node-to-node credential", "err", err)
		}
	}
	if secret := s.cfg.InitialManagement; secret != "" {
		if t, err := fsmState.ACLTokenBySecret(secret); err == nil && t == nil {
			_, err := s.g.ProposeHere(ctx, fsm.ACLEntry(&acl.Command{Op: acl.OpInitialManagement,
				Token: &acl.Token{AccessorID: uuid.NewString(), SecretID: secret, Description: "Initial Management Token"}}))
			if err != nil {
				s.logger.Warn("cannot create the initial management token", "err", err)
			} else {
				s.logger.Info("created the initial management token")
			}
		}
	}
}

// PeerSecretRequired says whether this node demands the node-to-node
// credential of its peers (ACLs on).
func (s *System) PeerSecretRequired() bool { return s.resolver != nil }

// PeerSecret is the cluster's node-to-node credential ("" while none is
// chosen), or an error if the state machine cannot say.
func (s *System) PeerSecret() (string, error) { return s.g.FSM().PeerSecret() }
