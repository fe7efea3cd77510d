package peerrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/kv"
)

// Prefix is where the protocol lives on the shared port.
const Prefix = "/internal/v1/"

// GroupHeader names the raft group a call is for; without it, group 0
// (which is how nodes of releases before groups call).
const GroupHeader = "X-Raftkv-Group"

// timeoutHeader carries the caller's remaining time, so the receiver gives
// up when the caller does.
const timeoutHeader = "X-Raftkv-Timeout-Ms"

// Voucher is a voter's term as it reported it, after the reads it asks a
// read index for arrived.
type Voucher struct {
	ID   string
	Term uint64
}

// Membership is a membership change forwarded to the leader.
type Membership struct {
	Op      string `json:"op"` // join, remove, transfer
	ID      string `json:"id"`
	Address string `json:"address,omitempty"`
	// NonVoter: a join that stays a non-voter for good (a read replica).
	NonVoter bool `json:"non_voter,omitempty"`
}

// response carries a result or a sentinel error (by wire code) back.
type response struct {
	Code    string              `json:"code,omitempty"`
	Error   string              `json:"error,omitempty"`
	Result  *kv.Result          `json:"result,omitempty"`
	Index   uint64              `json:"index,omitempty"`
	Term    uint64              `json:"term,omitempty"`
	Session *kv.Session         `json:"session,omitempty"`
	Stats   *autopilot.Stats    `json:"stats,omitempty"`
	Health  *kv.AutopilotHealth `json:"health,omitempty"`
}

// Node is what the server side needs of the node it runs on. Each method
// runs the request here, or refuses with kv.ErrNoLeader when this node is
// not the one that can (it never forwards).
type Node interface {
	// ApplyForwarded proposes a write sent by another node (the command in
	// the state machine's encoding, checked by the group).
	ApplyForwarded(ctx context.Context, generation uint64, command []byte) (*kv.Result, error)
	// ReadIndex confirms leadership (vouched for by asker, if not nil) and
	// returns the index a read must wait for.
	ReadIndex(ctx context.Context, asker *Voucher) (uint64, error)
	// Term answers a leadership probe for server id.
	Term(id string) (uint64, error)
	ChangeMembership(ctx context.Context, req Membership) error
	// Restore installs an uploaded snapshot.
	Restore(ctx context.Context, body io.Reader) error
	Renew(ctx context.Context, id string) (kv.Session, error)
	Stats() autopilot.Stats
	AutopilotHealth() (kv.AutopilotHealth, error)
	// MaxCommandBytes bounds a forwarded command's size.
	MaxCommandBytes() int
}

// Groups finds the Node of a raft group on this node, or fails with
// kv.ErrNoLeader (nothing is done; the caller may try elsewhere).
type Groups func(group uint64) (Node, error)

// Handler serves the protocol for the groups of this node. Calls without
// the caller's deadline get longCall (writes, restores, membership) or
// shortCall (the rest).
func Handler(groups Groups, longCall, shortCall time.Duration) http.Handler {
	h := &server{groups: groups, long: longCall, short: shortCall}
	m := http.NewServeMux()
	m.HandleFunc("POST "+Prefix+"apply", h.of(h.apply))
	m.HandleFunc("GET "+Prefix+"readindex", h.of(h.readIndex))
	m.HandleFunc("GET "+Prefix+"term", h.of(h.term))
	m.HandleFunc("POST "+Prefix+"membership", h.of(h.membership))
	m.HandleFunc("POST "+Prefix+"restore", h.of(h.restore))
	m.HandleFunc("PUT "+Prefix+"renew", h.of(h.renew))
	m.HandleFunc("GET "+Prefix+"stats", h.of(h.stats))
	m.HandleFunc("GET "+Prefix+"autopilot-health", h.of(h.autopilotHealth))
	return m
}

type server struct {
	groups      Groups
	long, short time.Duration
}

// of runs a call on the Node of the group the request names.
func (h *server) of(call func(n Node, w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var group uint64
		if v := r.Header.Get(GroupHeader); v != "" {
			var err error
			if group, err = strconv.ParseUint(v, 10, 64); err != nil {
				write(w, response{}, fmt.Errorf("%w: group %q: %v", kv.ErrInvalid, v, err))
				return
			}
		}
		n, err := h.groups(group)
		if err != nil {
			write(w, response{}, err)
			return
		}
		call(n, w, r)
	}
}

// bound limits a handler by the caller's remaining time.
func bound(r *http.Request, fallback time.Duration) (context.Context, context.CancelFunc) {
	d := fallback
	if ms, err := strconv.ParseInt(r.Header.Get(timeoutHeader), 10, 64); err == nil && ms > 0 {
		d = time.Duration(ms) * time.Millisecond
	}
	return context.WithTimeout(r.Context(), d)
}

func (h *server) apply(n Node, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(n.MaxCommandBytes())))
	if err != nil {
		write(w, response{}, fmt.Errorf("%w: read forwarded command: %v", kv.ErrInvalid, err))
		return
	}
	ctx, cancel := bound(r, h.long)
	defer cancel()
	generation, _ := strconv.ParseUint(r.URL.Query().Get("generation"), 10, 64) // absent (an older node): 0
	res, err := n.ApplyForwarded(ctx, generation, body)
	write(w, response{Result: res}, err)
}

func (h *server) readIndex(n Node, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := bound(r, h.long)
	defer cancel()
	var asker *Voucher
	if id := r.URL.Query().Get("id"); id != "" {
		term, err := strconv.ParseUint(r.URL.Query().Get("term"), 10, 64)
		if err != nil {
			write(w, response{}, fmt.Errorf("%w: read index request: bad term: %v", kv.ErrInvalid, err))
			return
		}
		asker = &Voucher{ID: id, Term: term}
	}
	idx, err := n.ReadIndex(ctx, asker)
	write(w, response{Index: idx}, err)
}

func (h *server) term(n Node, w http.ResponseWriter, r *http.Request) {
	term, err := n.Term(r.URL.Query().Get("id"))
	write(w, response{Term: term}, err)
}

func (h *server) membership(n Node, w http.ResponseWriter, r *http.Request) {
	var req Membership
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		write(w, response{}, fmt.Errorf("%w: membership request: %v", kv.ErrInvalid, err))
		return
	}
	ctx, cancel := bound(r, h.long)
	defer cancel()
	write(w, response{}, n.ChangeMembership(ctx, req))
}

func (h *server) restore(n Node, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := bound(r, h.long)
	defer cancel()
	write(w, response{}, n.Restore(ctx, r.Body))
}

func (h *server) renew(n Node, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := bound(r, h.short)
	defer cancel()
	sess, err := n.Renew(ctx, r.URL.Query().Get("id"))
	write(w, response{Session: &sess}, err)
}

func (h *server) stats(n Node, w http.ResponseWriter, _ *http.Request) {
	st := n.Stats()
	write(w, response{Stats: &st}, nil)
}

func (h *server) autopilotHealth(n Node, w http.ResponseWriter, _ *http.Request) {
	health, err := n.AutopilotHealth()
	write(w, response{Health: &health}, err)
}

func write(w http.ResponseWriter, out response, err error) {
	if err != nil {
		out = response{Code: kv.Code(err), Error: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// Refuse answers a caller that is not a member (no node certificate, no
// peer secret): 403, with the refusal in the protocol's own shape so that
// a member not yet recognised knows nothing was done.
func Refuse(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(response{Code: kv.Code(kv.ErrPermissionDenied), Error: "Permission denied: " + why})
}
