package raftstore

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/httpd"
	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

// ACLs: policies and tokens are replicated FSM state; this file proposes
// changes to them and reads them back. Who may do what is internal/acl's
// business, asked by the HTTP API (httpd).

// The FSM tells the resolver whether the cluster was bootstrapped, so that
// a secret is refused in Consul's words for a cluster that was not.
var _ acl.BootstrapSource = (*fsm.FSM)(nil)

// peerSecretHeader carries the node-to-node credential when ACLs are on
// without TLS (with TLS, a node's certificate is the credential).
const peerSecretHeader = peerrpc.SecretHeader

// ACLsEnabled reports whether requests are authorised by tokens.
func (s *RaftStore) ACLsEnabled() bool { return s.resolver != nil }

// ResolveToken is the identity of secret ("" : the anonymous token).
func (s *RaftStore) ResolveToken(secret string) (*acl.Identity, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	return s.resolver.Resolve(secret)
}

// ApplyACL proposes an ACL change (forwarded to the leader like any write)
// and waits until this node has applied it too, so that the caller's next
// request here sees it. The result's first entry holds the stored record
// as JSON.
func (s *RaftStore) ApplyACL(ctx context.Context, c *acl.Command) (*kv.Result, error) {
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
func (s *RaftStore) ACLState(ctx context.Context, stale bool) (httpd.ACLReader, error) {
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
func (s *RaftStore) leadACLs() {
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

// peerAuthorized: may r call the node-to-node endpoints? With TLS, only
// with a node's certificate for a member's host. With ACLs on and no TLS,
// only with the cluster's peer secret, once a leader with ACLs has chosen
// one (before that, during the first election or while ACLs are being
// turned on node by node, there is none to ask for). Otherwise anyone: an
// open cluster.
func (s *RaftStore) peerAuthorized(r *http.Request) bool {
	return s.peerAuthorizedBy(r.TLS, r.Header.Get(peerSecretHeader))
}

// peerAuthorizedBy decides for a caller by its TLS state (nil without TLS)
// and the peer secret it presented.
func (s *RaftStore) peerAuthorizedBy(state *tls.ConnectionState, presented string) bool {
	if s.cfg.tlsOn() {
		return fromPeer(state) && s.namesMember(state)
	}
	if s.resolver == nil {
		return true
	}
	secret, err := s.fsm.PeerSecret()
	if err != nil {
		return false
	}
	return secret == "" || subtle.ConstantTimeCompare([]byte(presented), []byte(secret)) == 1
}

// peerSecret is what this node presents to others: the cluster's peer
// secret when there is no TLS, whether or not this node enforces ACLs
// itself (nodes get them one restart at a time).
func (s *RaftStore) peerSecret() string {
	if s.cfg.tlsOn() {
		return ""
	}
	secret, _ := s.fsm.PeerSecret()
	return secret
}
