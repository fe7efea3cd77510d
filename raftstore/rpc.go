package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/fsm"
	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/reqtrace"
	"github.com/raftkv/raftkv/kv"
)

// Node-to-node calls share the HTTP side of the port. They are never
// forwarded again: a node that receives one but is no longer leader answers
// no_leader (nothing done) and the caller, which knows its request was not
// applied, looks for the new leader and retries.
const rpcPrefix = "/internal/v1/"

// rpcResponse carries a result or a sentinel error (by wire code) back.
type rpcResponse struct {
	Code    string              `json:"code,omitempty"`
	Error   string              `json:"error,omitempty"`
	Result  *kv.Result          `json:"result,omitempty"`
	Index   uint64              `json:"index,omitempty"`
	Term    uint64              `json:"term,omitempty"`
	Session *kv.Session         `json:"session,omitempty"`
	Stats   *autopilot.Stats    `json:"stats,omitempty"`
	Health  *kv.AutopilotHealth `json:"health,omitempty"`
}

type membershipRequest struct {
	Op      string `json:"op"` // join, remove, transfer
	ID      string `json:"id"`
	Address string `json:"address,omitempty"`
	// NonVoter: a join that stays a non-voter for good (a read replica).
	NonVoter bool `json:"non_voter,omitempty"`
}

const timeoutHeader = "X-Raftkv-Timeout-Ms"

func (s *RaftStore) rpcHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("POST "+rpcPrefix+"apply", s.rpcApply)
	m.HandleFunc("GET "+rpcPrefix+"readindex", s.rpcReadIndex)
	m.HandleFunc("GET "+rpcPrefix+"term", s.rpcTerm)
	m.HandleFunc("POST "+rpcPrefix+"membership", s.rpcMembership)
	m.HandleFunc("POST "+rpcPrefix+"restore", s.rpcRestore)
	m.HandleFunc("PUT "+rpcPrefix+"renew", s.rpcRenew)
	m.HandleFunc("GET "+rpcPrefix+"stats", s.rpcStats)
	m.HandleFunc("GET "+rpcPrefix+"autopilot-health", s.rpcAutopilotHealth)
	return m
}

// rpcContext bounds the handler by the caller's remaining time.
func rpcContext(r *http.Request, fallback time.Duration) (context.Context, context.CancelFunc) {
	d := fallback
	if ms, err := strconv.ParseInt(r.Header.Get(timeoutHeader), 10, 64); err == nil && ms > 0 {
		d = time.Duration(ms) * time.Millisecond
	}
	return context.WithTimeout(r.Context(), d)
}

func (s *RaftStore) rpcApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(kv.MaxTxnOps*(s.cfg.MaxValueBytes+kv.MaxKeyBytes+64)+4096)))
	if err != nil {
		writeRPC(w, nil, 0, fmt.Errorf("%w: read forwarded command: %v", kv.ErrInvalid, err))
		return
	}
	cmd, err := fsm.DecodeCommand(body)
	if err == nil {
		err = cmd.Validate(s.cfg.MaxValueBytes)
	}
	if err != nil {
		writeRPC(w, nil, 0, fmt.Errorf("%w: %v", kv.ErrInvalid, err))
		return
	}
	if !s.isLeader() {
		writeRPC(w, nil, 0, fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr))
		return
	}
	ctx, cancel := rpcContext(r, s.cfg.ApplyTimeout)
	defer cancel()
	res, err := s.applyLocal(ctx, cmd)
	writeRPC(w, res, 0, err)
}

func (s *RaftStore) rpcReadIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcContext(r, s.cfg.ApplyTimeout)
	defer cancel()
	var asker *voucher
	if id := r.URL.Query().Get("id"); id != "" {
		term, err := strconv.ParseUint(r.URL.Query().Get("term"), 10, 64)
		if err != nil {
			writeRPC(w, nil, 0, fmt.Errorf("%w: read index request: bad term: %v", kv.ErrInvalid, err))
			return
		}
		asker = &voucher{ID: id, Term: term}
	}
	idx, err := s.leaderReadIndex(ctx, asker)
	writeRPC(w, nil, idx, err)
}

// rpcTerm answers the leader's leadership probe (see verifier). It reads
// raft's term without going through raft's loops, so it stays fast while
// this node is storing log entries.
func (s *RaftStore) rpcTerm(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("id"); id != s.id {
		writeRPC(w, nil, 0, fmt.Errorf("%w: probe for %q reached %q", kv.ErrNoLeader, id, s.id))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rpcResponse{Term: s.raft.CurrentTerm()})
}

func (s *RaftStore) rpcMembership(w http.ResponseWriter, r *http.Request) {
	var req membershipRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeRPC(w, nil, 0, fmt.Errorf("%w: membership request: %v", kv.ErrInvalid, err))
		return
	}
	ctx, cancel := rpcContext(r, s.cfg.ApplyTimeout)
	defer cancel()
	writeRPC(w, nil, 0, s.changeMembershipLocal(ctx, req))
}

func (s *RaftStore) rpcRestore(w http.ResponseWriter, r *http.Request) {
	if !s.isLeader() {
		writeRPC(w, nil, 0, fmt.Errorf("%w: %s is not the leader", kv.ErrNoLeader, s.addr))
		return
	}
	f, size, err := s.spoolSnapshot(r.Body)
	if err != nil {
		writeRPC(w, nil, 0, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		writeRPC(w, nil, 0, err)
		return
	}
	ctx, cancel := rpcContext(r, s.cfg.ApplyTimeout)
	defer cancel()
	writeRPC(w, nil, 0, s.restoreLocal(ctx, f, size))
}

func (s *RaftStore) rpcRenew(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := rpcContext(r, s.peerTimeout())
	defer cancel()
	sess, err := s.renewLocal(ctx, r.URL.Query().Get("id"))
	if err != nil {
		writeRPC(w, nil, 0, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rpcResponse{Session: &sess})
}

func writeRPC(w http.ResponseWriter, res *kv.Result, index uint64, err error) {
	out := rpcResponse{Result: res, Index: index}
	if err != nil {
		out = rpcResponse{Code: kv.Code(err), Error: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// peerClient calls other nodes over pooled keep-alive connections.
type peerClient struct {
	hc *http.Client
}

func newPeerClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *peerClient {
	return &peerClient{hc: &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}}
}

func (p *peerClient) close() { p.hc.CloseIdleConnections() }

// call sends one request. Failures before the request was fully written
// mean the peer did nothing (ErrNoLeader: retry elsewhere); failures after
// it mean the outcome is unknown.
func (p *peerClient) call(ctx context.Context, method, addr, path string, body []byte) (*rpcResponse, error) {
	return p.callStream(ctx, method, addr, path, bytes.NewReader(body), int64(len(body)))
}

func (p *peerClient) callStream(ctx context.Context, method, addr, path string, body io.Reader, size int64) (*rpcResponse, error) {
	ctx, trace := reqtrace.With(ctx)
	rc := io.NopCloser(body)
	if size == 0 {
		rc = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kv.ErrInvalid, err)
	}
	req.ContentLength = size
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set(timeoutHeader, strconv.FormatInt(max(time.Until(d).Milliseconds(), 1), 10))
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		if trace.MayHaveArrived() {
			return nil, fmt.Errorf("%w: %s %s: %v", kv.ErrUnknownOutcome, method, addr, err)
		}
		return nil, fmt.Errorf("%w: cannot reach leader %s: %v", kv.ErrNoLeader, addr, err)
	}
	defer resp.Body.Close()
	var out rpcResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: bad answer from %s (status %d): %v", kv.ErrUnknownOutcome, addr, resp.StatusCode, err)
	}
	if out.Code != "" {
		return nil, kv.FromCode(out.Code, out.Error)
	}
	return &out, nil
}

func (p *peerClient) apply(ctx context.Context, addr string, cmd *kv.Command) (*kv.Result, error) {
	out, err := p.call(ctx, http.MethodPost, addr, rpcPrefix+"apply", fsm.EncodeCommand(cmd))
	if err != nil {
		return nil, err
	}
	if out.Result == nil {
		return nil, fmt.Errorf("%w: empty answer from %s", kv.ErrUnknownOutcome, addr)
	}
	return out.Result, nil
}

func (p *peerClient) readIndex(ctx context.Context, addr string, self voucher) (uint64, error) {
	q := url.Values{"id": {self.ID}, "term": {strconv.FormatUint(self.Term, 10)}}
	out, err := p.call(ctx, http.MethodGet, addr, rpcPrefix+"readindex?"+q.Encode(), nil)
	if errors.Is(err, kv.ErrUnknownOutcome) {
		err = fmt.Errorf("%w: %v", kv.ErrNoLeader, err) // a read has no outcome to lose
	}
	if err != nil {
		return 0, err
	}
	return out.Index, nil
}

func (p *peerClient) membership(ctx context.Context, addr string, req membershipRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = p.call(ctx, http.MethodPost, addr, rpcPrefix+"membership", body)
	return err
}
