package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// SessionOptions describe a new session. Zero values take the server's
// defaults: the node that receives the request, lock-delay 15s, behaviour
// release, no TTL, and the serfHealth check (the session dies with its
// node) unless NoChecks is set.
type SessionOptions struct {
	Name      string
	Node      string
	TTL       time.Duration // 0: none; else 10s..24h
	LockDelay time.Duration // 0: the default (15s); negative: none
	Behavior  string        // kv.BehaviorRelease or kv.BehaviorDelete
	NoChecks  bool
}

// CreateSession creates a session and returns its ID.
func (c *Client) CreateSession(ctx context.Context, o SessionOptions) (string, error) {
	body := map[string]any{}
	if o.Name != "" {
		body["Name"] = o.Name
	}
	if o.Node != "" {
		body["Node"] = o.Node
	}
	if o.TTL > 0 {
		body["TTL"] = o.TTL.String()
	}
	switch {
	case o.LockDelay > 0:
		body["LockDelay"] = o.LockDelay.String()
	case o.LockDelay < 0:
		body["LockDelay"] = "0s"
	}
	if o.Behavior != "" {
		body["Behavior"] = o.Behavior
	}
	if o.NoChecks {
		body["NodeChecks"] = []string{}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	resp, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/session/create", body: b, write: true})
	if err != nil {
		return "", err
	}
	var out struct{ ID string }
	return out.ID, decode(resp, &out)
}

// DestroySession invalidates a session; an unknown one is not an error.
func (c *Client) DestroySession(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/session/destroy/" + url.PathEscape(id), write: true})
	return err
}

// RenewSession restarts a session's TTL; kv.ErrNotFound once it is gone.
func (c *Client) RenewSession(ctx context.Context, id string) (kv.Session, error) {
	return c.renewSession(ctx, id, 0)
}

// renewSession renews with attempts bounded by attempt (0: the client's).
func (c *Client) renewSession(ctx context.Context, id string, attempt time.Duration) (kv.Session, error) {
	resp, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/session/renew/" + url.PathEscape(id), repeatable: true, attempt: attempt})
	if err != nil {
		return kv.Session{}, err
	}
	if resp.status == http.StatusNotFound {
		// Consul's words for a session that is gone; any other 404 is not
		// an answer about the session.
		msg := strings.TrimSpace(string(resp.body))
		if !strings.HasPrefix(msg, "Session id ") {
			return kv.Session{}, unexpected(resp)
		}
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "%s", msg)
	}
	var out []wire.SessionEntry
	if err := decode(resp, &out); err != nil || len(out) != 1 {
		return kv.Session{}, fmt.Errorf("renew %s: unexpected answer: %v", id, err)
	}
	return out[0].Session(), nil
}

// SessionInfo returns a session; kv.ErrNotFound if it does not exist.
func (c *Client) SessionInfo(ctx context.Context, id string, opts ...ReadOption) (kv.Session, Meta, error) {
	list, meta, err := c.sessions(ctx, "/v1/session/info/"+url.PathEscape(id), opts)
	if err != nil {
		return kv.Session{}, meta, err
	}
	if len(list) == 0 {
		return kv.Session{}, meta, fmt.Errorf("%w: session %s", kv.ErrNotFound, id)
	}
	return list[0], meta, nil
}

// Sessions lists the sessions (of node, if not empty).
func (c *Client) Sessions(ctx context.Context, node string, opts ...ReadOption) ([]kv.Session, Meta, error) {
	path := "/v1/session/list"
	if node != "" {
		path = "/v1/session/node/" + url.PathEscape(node)
	}
	return c.sessions(ctx, path, opts)
}

func (c *Client) sessions(ctx context.Context, path string, opts []ReadOption) ([]kv.Session, Meta, error) {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	params, extra := o.params()
	if len(params) > 0 {
		path += "?" + params.Encode()
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, repeatable: true, extra: extra})
	if err != nil {
		return nil, Meta{}, err
	}
	var out []wire.SessionEntry
	if err := decode(resp, &out); err != nil {
		return nil, Meta{}, err
	}
	list := make([]kv.Session, len(out))
	for i, s := range out {
		list[i] = s.Session()
	}
	return list, metaOf(resp.header), nil
}

// Acquire writes key and takes its lock for session if the lock is free (or
// already the session's). It returns the entry as written (its LockIndex is
// the fencing token) and whether the lock was taken; not taken means held
// by another session or under lock-delay. An unknown session is an error
// (kv.ErrSession).
func (c *Client) Acquire(ctx context.Context, key string, value []byte, session string) (kv.Entry, bool, error) {
	return c.lockTxn(ctx, "lock", key, value, 0, session)
}

// Release writes key and frees its lock if session holds it.
func (c *Client) Release(ctx context.Context, key string, value []byte, session string) (kv.Entry, bool, error) {
	return c.lockTxn(ctx, "unlock", key, value, 0, session)
}

// lockTxn runs a one-op transaction, which, unlike ?acquire, answers with
// the entry (and its LockIndex) atomically.
func (c *Client) lockTxn(ctx context.Context, verb, key string, value []byte, flags uint64, session string) (kv.Entry, bool, error) {
	res, err := c.Txn(ctx, []TxnOp{{Verb: verb, Key: key, Value: value, Flags: flags, Session: session}})
	if err != nil {
		if res != nil && len(res.Errors) > 0 && strings.HasPrefix(res.Errors[0].What, "invalid session") {
			return kv.Entry{}, false, fmt.Errorf("%w: %s", kv.ErrSession, res.Errors[0].What)
		}
		if res != nil && len(res.Errors) > 0 {
			return kv.Entry{}, false, nil // held by another session, or lock-delay
		}
		return kv.Entry{}, false, err
	}
	if len(res.Results) != 1 {
		return kv.Entry{}, false, fmt.Errorf("%s %q: %d results", verb, key, len(res.Results))
	}
	return res.Results[0], true, nil
}
