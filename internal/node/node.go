package node

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/fwdstream"
	"github.com/raftkv/raftkv/internal/mux"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/kv"
)

// Config describes the process's side of a node.
type Config struct {
	// ID is the node's server ID in every group (default: the advertise
	// address).
	ID string
	// Addr is the address to listen on; ignored when Listener is set.
	Addr      string
	Listener  net.Listener
	Advertise string
	// DataDir is locked for this process while the node runs.
	DataDir string
	// TLS, when its files are given, makes the port speak only TLS (see
	// package mux); TLSVerifyIncoming demands client certificates over HTTP.
	TLS               tlsutil.Files
	TLSVerifyIncoming bool
	Logger            *slog.Logger
	// LongCall bounds a node-to-node call that carries no deadline of its
	// caller's and may wait for a commit (a forwarded write, a membership
	// change); ShortCall the others.
	LongCall, ShortCall time.Duration
	// MaxCommandBytes bounds a forwarded command.
	MaxCommandBytes int
	// Groups are the IDs of the groups the node will carry: their raft
	// connections wait for them from the start.
	Groups []uint64
}

// Group is what the node asks of a raft group it carries: it serves the
// node-to-node calls made to that group (package peerrpc's Node).
type Group = peerrpc.Node

// PeerAuth is who the node lets call its node-to-node endpoints and
// streams (Serve's caller knows; the node does not look inside groups).
type PeerAuth interface {
	// MemberAddrs are the advertised addresses of the servers of every
	// group: with TLS, a peer's certificate must name one of their hosts.
	MemberAddrs() []string
	// PeerSecretRequired says whether peers must present the secret
	// without TLS (ACLs on).
	PeerSecretRequired() bool
	// PeerSecret is the secret peers present without TLS, "" while none is
	// chosen. With an error, no peer is let in.
	PeerSecret() (string, error)
	// AuthGeneration changes whenever an earlier answer may have changed.
	AuthGeneration() [2]uint64
}

// Node owns what exists once per process: the listener and its mux, TLS,
// the clients and servers of the node-to-node protocols (raft streams,
// forwarding streams, peer calls), the HTTP server, the node's identity
// and peer authentication. The raft groups it carries attach with
// AddGroup; each names itself on the wire by its ID.
type Node struct {
	cfg     Config
	id      string
	addr    string
	logger  *slog.Logger
	dirLock *os.File

	mux       *mux.Mux
	peers     *peerrpc.Client
	forwards  *fwdstream.Client
	forwarded *fwdstream.Server
	http      *http.Server

	mu     sync.RWMutex
	groups map[uint64]Group
	auth   PeerAuth

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open takes the data dir and the port. Nothing is served until Serve.
func Open(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	n := &Node{cfg: cfg, groups: map[uint64]Group{}}
	if n.dirLock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.dirLock.Close()
		}
	}()
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("node: listen on %s: %w", cfg.Addr, err)
		}
	}
	muxOpts := mux.Options{Advertise: cfg.Advertise, Logger: cfg.Logger}
	if cfg.TLS != (tlsutil.Files{}) {
		store, err := tlsutil.Load(cfg.TLS)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("node: %w", err)
		}
		muxOpts.TLS = &mux.TLS{Store: store, VerifyIncoming: cfg.TLSVerifyIncoming}
	}
	if n.mux, err = mux.New(ln, muxOpts); err != nil {
		ln.Close()
		return nil, err
	}
	for _, g := range cfg.Groups {
		n.mux.ReserveRaftLayer(g)
	}
	n.addr = n.mux.Addr().String()
	n.id = cfg.ID
	if n.id == "" {
		n.id = n.addr
	}
	n.logger = cfg.Logger.With("node", n.id)
	n.peers = peerrpc.NewClient(n.mux.DialContext, n.presentedSecret)
	n.forwards = fwdstream.NewClient(n.mux.DialForward, n.presentedSecret)
	n.forwarded = fwdstream.NewServer((*forwardTarget)(n), cfg.LongCall)
	return n, nil
}

// ID is the node's server ID.
func (n *Node) ID() string { return n.id }

// Addr is the node's advertised address (every protocol's).
func (n *Node) Addr() string { return n.addr }

// Logger is the node's logger (its lines name the node).
func (n *Node) Logger() *slog.Logger { return n.logger }

// TLSOn reports whether the port speaks TLS.
func (n *Node) TLSOn() bool { return n.cfg.TLS != (tlsutil.Files{}) }

// RaftLayer is group's raft stream layer on the shared port.
func (n *Node) RaftLayer(group uint64) (raft.StreamLayer, error) { return n.mux.RaftLayer(group) }

// Peers is the client of the node-to-node calls, for group.
func (n *Node) Peers(group uint64) *peerrpc.Client { return n.peers.Group(group) }

// Forwards is the client of the forwarding streams, shared by every group.
func (n *Node) Forwards() *fwdstream.Client { return n.forwards }

// AddGroup makes the node route group's node-to-node calls to g.
func (n *Node) AddGroup(group uint64, g Group) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.groups[group]; ok {
		return fmt.Errorf("node: group %d is already open here", group)
	}
	n.groups[group] = g
	return nil
}

// OnUnknownGroup sets what hears of raft traffic for a group this node
// does not run: true if it starts the group (without blocking), and then
// the traffic waits for it; StartFailed(group) undoes that if the start
// fails.
func (n *Node) OnUnknownGroup(fn func(group uint64) bool) { n.mux.OnUnknownRaftGroup(fn) }

// StartFailed closes the raft connections waiting for a group
// OnUnknownGroup's function said it starts, but that did not start.
func (n *Node) StartFailed(group uint64) { n.mux.UnreserveRaftLayer(group) }

// RemoveGroup stops routing group's calls (they are refused as coming to
// a node without the group).
func (n *Node) RemoveGroup(group uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.groups, group)
}

func (n *Node) group(id uint64) (Group, error) {
	n.mu.RLock()
	g, ok := n.groups[id]
	n.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: no group %d on %s", kv.ErrNoLeader, id, n.addr)
	}
	return g, nil
}

// SetPeerAuth says who is a peer, and what this node presents to its
// peers; until then it presents nothing and lets no peer in.
func (n *Node) SetPeerAuth(auth PeerAuth) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.auth = auth
}

// Serve starts the HTTP server (api for everything but the node-to-node
// endpoints) and the forwarding streams' server.
func (n *Node) Serve(api http.Handler) {
	n.http = &http.Server{
		Handler:           n.routes(api),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.logger.Handler(), slog.LevelDebug),
	}
	n.spawn(func() {
		if err := n.http.Serve(n.mux.HTTPListener()); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.logger.Error("http server stopped", "err", err)
		}
	})
	n.spawn(func() { _ = n.forwarded.Serve(n.mux.ForwardListener()) })
}

func (n *Node) spawn(fn func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); fn() }()
}

// routes splits node-to-node calls from the public API by prefix (not with
// a ServeMux, which would answer unclean key paths like "a//b" with a 301
// that clients follow as a GET).
func (n *Node) routes(api http.Handler) http.Handler {
	rpc := peerrpc.Handler(n.group, n.cfg.LongCall, n.cfg.ShortCall)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, peerrpc.Prefix) {
			if !n.peerAuthorized(r.TLS, r.Header.Get(peerrpc.SecretHeader)) {
				peerrpc.Refuse(w, "node-to-node endpoints are for members only")
				return
			}
			rpc.ServeHTTP(w, r)
			return
		}
		if fp := n.mux.FailpointHandler(); fp != nil && strings.HasPrefix(r.URL.Path, "/debug/failpoints/") {
			fp.ServeHTTP(w, r) // only in binaries built with -tags failpoints
			return
		}
		api.ServeHTTP(w, r)
	})
}

// StopServing ends the HTTP server (requests in flight get up to 3 s) and
// the forwarding streams, both ways. Raft streams stay until their groups
// close.
func (n *Node) StopServing() {
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := n.http.Shutdown(ctx); err != nil {
			n.http.Close()
		}
		cancel()
	}
	n.forwarded.Close()
	n.forwards.Close()
}

// Close stops serving and releases the port and the data dir. Its groups
// must be closed first.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.StopServing()
		err := n.mux.Close()
		n.wg.Wait()
		n.peers.Close()
		n.dirLock.Close()
		n.closeErr = err
	})
	return n.closeErr
}

// presentedSecret is what this node presents to others: the cluster's
// peer secret when there is no TLS (with TLS, its certificate speaks for
// it), whether or not this node enforces ACLs itself (nodes get them one
// restart at a time).
func (n *Node) presentedSecret() string {
	auth := n.peerAuth()
	if n.TLSOn() || auth == nil {
		return ""
	}
	secret, _ := auth.PeerSecret()
	return secret
}

func (n *Node) peerAuth() PeerAuth {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.auth
}

// peerAuthorized: may a caller (its TLS state, nil without TLS, and the
// peer secret it presented) use the node-to-node endpoints and streams?
// With TLS, only with a node's certificate for a member's host. Without
// TLS and with ACLs on, only with the cluster's peer secret, once a leader
// with ACLs has chosen one (before that, during the first election or
// while ACLs are being turned on node by node, there is none to ask for).
// Otherwise anyone: an open cluster.
func (n *Node) peerAuthorized(state *tls.ConnectionState, presented string) bool {
	auth := n.peerAuth()
	if auth == nil {
		return false
	}
	if n.TLSOn() {
		return fromPeer(state) && namesMember(state, auth.MemberAddrs())
	}
	if !auth.PeerSecretRequired() {
		return true
	}
	secret, err := auth.PeerSecret()
	if err != nil {
		return false
	}
	return secret == "" || subtle.ConstantTimeCompare([]byte(presented), []byte(secret)) == 1
}

// fromPeer: the request came over TLS with a certificate signed by the CA
// that is a node's (it may serve, not only a client's).
func fromPeer(state *tls.ConnectionState) bool {
	if state == nil || len(state.VerifiedChains) == 0 {
		return false
	}
	for _, u := range state.PeerCertificates[0].ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			return true
		}
	}
	return false
}

// namesMember: the certificate names the advertise host of a member, as
// the dialling side checks for the host it dials. A node certificate made
// for another host is not a member's.
func namesMember(state *tls.ConnectionState, members []string) bool {
	cert := state.PeerCertificates[0]
	for _, addr := range members {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && cert.VerifyHostname(host) == nil {
			return true
		}
	}
	return false
}

// forwardTarget is the node as the forwarding streams' server sees it.
type forwardTarget Node

func (f *forwardTarget) ApplyForwarded(ctx context.Context, group, generation uint64, command []byte) (*kv.Result, error) {
	g, err := (*Node)(f).group(group)
	if err != nil {
		return nil, err
	}
	return g.ApplyForwarded(ctx, generation, command)
}

func (f *forwardTarget) MaxCommandBytes() int { return f.cfg.MaxCommandBytes }

func (f *forwardTarget) AuthorizePeer(state *tls.ConnectionState, secret string) error {
	if !(*Node)(f).peerAuthorized(state, secret) {
		return fmt.Errorf("%w: forwarding is for members only", kv.ErrPermissionDenied)
	}
	return nil
}

func (f *forwardTarget) AuthGeneration() [2]uint64 {
	if auth := (*Node)(f).peerAuth(); auth != nil {
		return auth.AuthGeneration()
	}
	return [2]uint64{}
}
