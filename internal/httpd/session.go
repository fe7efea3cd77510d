package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// SessionStore holds Consul's sessions (/v1/session).
type SessionStore interface {
	// CreateSession creates a session and returns its ID. Empty fields
	// take Consul's defaults, except NodeChecks (nil: none).
	CreateSession(ctx context.Context, spec kv.Session) (string, error)
	// DestroySession invalidates a session; an unknown one is not an error.
	DestroySession(ctx context.Context, id string) error
	// RenewSession restarts a session's TTL and returns the session.
	RenewSession(ctx context.Context, id string) (kv.Session, error)
	// Sessions answers a session query (see kv.SessionQuery).
	Sessions(ctx context.Context, q kv.SessionQuery) (*kv.SessionResult, error)
	// HeldKeys returns the keys each session holds, linearizable unless stale.
	HeldKeys(ctx context.Context, stale bool) (map[string][]string, error)
}

// sessionRequest is the body of a create. Pointers and raw values tell
// "absent" from "empty", which Consul gives different meanings; field
// names match case-insensitively (encoding/json), as clients rely on.
type sessionRequest struct {
	Name          string
	Node          string
	LockDelay     json.RawMessage
	Behavior      string
	TTL           string
	NodeChecks    *[]string
	Checks        *[]string
	ServiceChecks []struct{ ID string }
}

// spec turns a create request into a session with Consul's defaults.
func (r *sessionRequest) spec() (kv.Session, error) {
	s := kv.Session{Name: r.Name, Node: r.Node, Behavior: r.Behavior, TTL: r.TTL, LockDelay: kv.DefaultLockDelay}
	if s.Behavior == "" {
		s.Behavior = kv.BehaviorRelease
	}
	delay, err := parseLockDelay(r.LockDelay)
	if err != nil {
		return s, fmt.Errorf("%w: Request decode failed: %v", kv.ErrInvalid, err)
	}
	if delay != nil {
		s.LockDelay = *delay
	}
	// Checks: serfHealth unless the request says otherwise. An empty
	// list, in either field, means no checks at all (Consul's rules for
	// the old Checks field and the newer NodeChecks).
	checks := []string{kv.SerfHealth}
	if r.NodeChecks != nil {
		checks = *r.NodeChecks
	}
	if r.Checks != nil {
		switch {
		case len(*r.Checks) == 0:
			checks = []string{}
		case len(*r.Checks) == 1 && (*r.Checks)[0] == kv.SerfHealth:
		default:
			for _, c := range *r.Checks {
				if !contains(checks, c) {
					checks = append(checks, c)
				}
			}
		}
	}
	if len(r.ServiceChecks) > 0 { // no service catalogue here
		return s, kv.Errorf(kv.ErrSession, "Missing check '%s' registration", r.ServiceChecks[0].ID)
	}
	s.NodeChecks = checks
	return s, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseLockDelay reads Consul's LockDelay: a duration string or a number
// of nanoseconds, where anything below 1000 means seconds. nil: absent.
func parseLockDelay(raw json.RawMessage) (*time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var d time.Duration
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return nil, err
		}
	default:
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, fmt.Errorf("LockDelay must be a duration or a number: %v", err)
		}
		d = time.Duration(f)
	}
	if d < 1000 {
		d *= time.Second
	}
	return &d, nil
}

func (h *handler) sessionCreate(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", kv.ErrInvalid, err)
	}
	var req sessionRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return fmt.Errorf("%w: Request decode failed: %s", kv.ErrInvalid, jsonProblem(err))
		}
	}
	spec, err := req.spec()
	if err != nil {
		return err
	}
	node := spec.Node
	if node == "" {
		node = h.node.ID()
	}
	if who := identity(r); !who.SessionWrite(node) {
		return who.Denied("session", acl.Write, node)
	}
	id, err := h.sessions.CreateSession(r.Context(), spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{ ID string }{id})
	return nil
}

// sessionArg is what follows prefix in the path: a session ID or a node.
func sessionArg(r *http.Request, prefix, missing string) (string, error) {
	arg := strings.TrimPrefix(r.URL.Path, prefix)
	if arg == "" {
		return "", kv.Errorf(kv.ErrInvalid, "%s", missing)
	}
	return arg, nil
}

func (h *handler) sessionDestroy(w http.ResponseWriter, r *http.Request) error {
	id, err := sessionArg(r, "/v1/session/destroy/", "Missing session")
	if err != nil {
		return err
	}
	if err := h.mayWriteSession(r, id); err != nil {
		return err
	}
	if err := h.sessions.DestroySession(r.Context(), id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, true)
	return nil
}

func (h *handler) sessionRenew(w http.ResponseWriter, r *http.Request) error {
	id, err := sessionArg(r, "/v1/session/renew/", "Missing session")
	if err != nil {
		return err
	}
	if err := h.mayWriteSession(r, id); err != nil {
		return err
	}
	s, err := h.sessions.RenewSession(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, []wire.SessionEntry{wire.FromSession(s)})
	return nil
}

func (h *handler) sessionInfo(w http.ResponseWriter, r *http.Request) error {
	id, err := sessionArg(r, "/v1/session/info/", "Missing session")
	if err != nil {
		return err
	}
	return h.sessionRead(w, r, kv.SessionQuery{ID: id})
}

func (h *handler) sessionNode(w http.ResponseWriter, r *http.Request) error {
	node, err := sessionArg(r, "/v1/session/node/", "Missing node name")
	if err != nil {
		return err
	}
	return h.sessionRead(w, r, kv.SessionQuery{Node: node})
}

func (h *handler) sessionList(w http.ResponseWriter, r *http.Request) error {
	return h.sessionRead(w, r, kv.SessionQuery{})
}

// sessionKeys answers GET /v1/session/keys (a raftkv extension, for the
// web UI): {"<session ID>": ["key", ...]} for every session holding keys,
// in one request however many sessions there are. Like the session and key
// reads it stands for, it shows only sessions the token may read, and of
// their keys only those it may read (a key's holder is part of its entry).
// One linearization covers both reads.
func (h *handler) sessionKeys(w http.ResponseWriter, r *http.Request) error {
	if has(r.URL.Query(), "index") {
		return kv.Errorf(kv.ErrInvalid, "blocking queries are not supported on /v1/session/keys")
	}
	stale, _, _, err := readParams(r)
	if err != nil {
		return err
	}
	sessions, err := h.sessions.Sessions(r.Context(), kv.SessionQuery{Stale: stale})
	if err != nil {
		return err
	}
	held, err := h.sessions.HeldKeys(r.Context(), true)
	if err != nil {
		return err
	}
	who := identity(r)
	out := make(map[string][]string, len(held))
	filtered := false
	for _, s := range sessions.Sessions {
		keys, ok := held[s.ID]
		if !ok {
			continue
		}
		if !who.SessionRead(s.Node) {
			filtered = true
			continue
		}
		visibleKeys, some := visible(keys, who.KeyRead)
		filtered = filtered || some
		if len(visibleKeys) > 0 {
			out[s.ID] = visibleKeys
		}
	}
	markFiltered(w, filtered)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sessionRead answers the session GETs: reads like /v1/kv (linearizable
// unless ?stale, blocking with ?index and ?wait, the X-Consul-* headers).
func (h *handler) sessionRead(w http.ResponseWriter, r *http.Request, q kv.SessionQuery) error {
	var err error
	if q.Stale, q.MinIndex, q.Wait, err = readParams(r); err != nil {
		return err
	}
	res, err := h.sessions.Sessions(r.Context(), q)
	if err != nil {
		return err
	}
	setQueryHeaders(w, &kv.QueryResult{Index: res.Index, KnownLeader: res.KnownLeader, LastContact: res.LastContact, Stale: res.Stale})
	who := identity(r)
	sessions, filtered := visible(res.Sessions, func(s kv.Session) bool { return who.SessionRead(s.Node) })
	markFiltered(w, filtered)
	out := make([]wire.SessionEntry, 0, len(sessions))
	for _, s := range sessions {
		out = append(out, wire.FromSession(s))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// mayWriteSession: may the request's token change session id (write on
// its node's sessions)? An unknown session is let through: its answer
// says nothing a token could not know.
func (h *handler) mayWriteSession(r *http.Request, id string) error {
	who := identity(r)
	if who == allowAll {
		return nil
	}
	res, err := h.sessions.Sessions(r.Context(), kv.SessionQuery{ID: id, Stale: true})
	if err != nil {
		return err
	}
	for _, s := range res.Sessions {
		if !who.SessionWrite(s.Node) {
			return who.Denied("session", acl.Write, s.Node)
		}
	}
	return nil
}
