package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// ReadOption changes a read.
type ReadOption func(*readOpts)

type readOpts struct {
	stale     bool
	waitIndex uint64
	wait      time.Duration
}

// Stale reads from whichever node answers, without a linearizability check.
func Stale() ReadOption { return func(o *readOpts) { o.stale = true } }

// WaitIndex makes the read a blocking query: it answers once the result's
// index is greater than index, or after wait (0: the server's default, 5m).
func WaitIndex(index uint64, wait time.Duration) ReadOption {
	return func(o *readOpts) { o.waitIndex, o.wait = index, wait }
}

func (c *Client) read(ctx context.Context, key string, params url.Values, opts []ReadOption) (*response, Meta, error) {
	if err := checkKey(key); err != nil {
		return nil, Meta{}, err
	}
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	more, extra := o.params()
	for k, v := range more {
		params[k] = v
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: kvPath(key, params), extra: extra, repeatable: true})
	if err != nil {
		return nil, Meta{}, err
	}
	if resp.status == http.StatusNotFound && resp.header.Get("X-Consul-Index") == "" {
		// A key read's 404 ("no such key") carries the index to wait on;
		// any other is not a KV answer (another server, a wrong path).
		return nil, Meta{}, unexpected(resp)
	}
	return resp, metaOf(resp.header), nil
}

// checkKey refuses a key that no request path can name: the API cleans
// paths ("/v1/kv//a" is "/v1/kv/a"), so a key with a leading "/" or an
// empty, "." or ".." segment would be another key, or refused. Like
// Consul's client, a leading "/" is refused rather than dropped.
func checkKey(key string) error {
	if strings.HasPrefix(key, "/") {
		return kv.Errorf(kv.ErrInvalid, "key %q begins with \"/\": keys are relative, as in Consul (did you mean %q?)", key, strings.TrimLeft(key, "/"))
	}
	for i, seg := range strings.Split(key, "/") {
		last := i == strings.Count(key, "/")
		if seg == "." || seg == ".." || seg == "" && i > 0 && !last {
			return kv.Errorf(kv.ErrInvalid, "key %q has an empty, \".\" or \"..\" segment, which the HTTP API cannot name", key)
		}
	}
	return nil
}

// params are the query parameters of the options, and how much longer than
// a plain call a blocking query may take.
func (o readOpts) params() (url.Values, time.Duration) {
	params := url.Values{}
	if o.stale {
		params.Set("stale", "")
	}
	extra := time.Duration(0)
	if o.waitIndex > 0 {
		params.Set("index", strconv.FormatUint(o.waitIndex, 10))
		extra = kv.DefaultWait
		if o.wait > 0 {
			params.Set("wait", o.wait.String())
			extra = o.wait
		}
		extra += extra/16 + time.Second // the server adds up to wait/16 of jitter
	}
	return params, extra
}

func kvPath(key string, params url.Values) string {
	p := "/v1/kv/" + escapeKey(key)
	if len(params) > 0 {
		p += "?" + params.Encode()
	}
	return p
}

// escapeKey escapes each path segment but keeps the slashes.
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// Get returns one key; kv.ErrNotFound if it does not exist.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (kv.Entry, Meta, error) {
	resp, meta, err := c.read(ctx, key, url.Values{}, opts)
	if err != nil {
		return kv.Entry{}, meta, err
	}
	if resp.status == http.StatusNotFound {
		return kv.Entry{}, meta, fmt.Errorf("%w: %q", kv.ErrNotFound, key)
	}
	var out []api.DirEntry
	if err := decode(resp, &out); err != nil || len(out) != 1 {
		return kv.Entry{}, meta, fmt.Errorf("get %q: unexpected answer (%d entries): %v", key, len(out), err)
	}
	return out[0].Entry(), meta, nil
}

// List returns every entry under prefix, sorted by key (empty if none).
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) ([]kv.Entry, Meta, error) {
	resp, meta, err := c.read(ctx, prefix, url.Values{"recurse": {""}}, opts)
	if err != nil || resp.status == http.StatusNotFound {
		return nil, meta, err
	}
	var out []api.DirEntry
	if err := decode(resp, &out); err != nil {
		return nil, meta, err
	}
	entries := make([]kv.Entry, len(out))
	for i, d := range out {
		entries[i] = d.Entry()
	}
	return entries, meta, nil
}

// Keys returns the key names under prefix, rolled up at separator if set.
func (c *Client) Keys(ctx context.Context, prefix, separator string, opts ...ReadOption) ([]string, Meta, error) {
	params := url.Values{"keys": {""}}
	if separator != "" {
		params.Set("separator", separator)
	}
	resp, meta, err := c.read(ctx, prefix, params, opts)
	if err != nil || resp.status == http.StatusNotFound {
		return nil, meta, err
	}
	var keys []string
	return keys, meta, decode(resp, &keys)
}

// WriteOption changes a write.
type WriteOption func(url.Values)

// WithFlags stores an opaque uint64 with the key.
func WithFlags(flags uint64) WriteOption {
	return func(v url.Values) { v.Set("flags", strconv.FormatUint(flags, 10)) }
}

// WithCAS makes the write conditional on the key's ModifyIndex (0: the key
// must not exist). A write that does not match fails with kv.ErrCASMismatch.
func WithCAS(modifyIndex uint64) WriteOption {
	return func(v url.Values) { v.Set("cas", strconv.FormatUint(modifyIndex, 10)) }
}

// Recurse makes Delete remove every key under the prefix.
func Recurse() WriteOption { return func(v url.Values) { v.Set("recurse", "") } }

func (c *Client) writeBool(ctx context.Context, method, key string, body []byte, opts []WriteOption) error {
	if err := checkKey(key); err != nil {
		return err
	}
	params := url.Values{}
	for _, o := range opts {
		o(params)
	}
	req := request{method: method, path: kvPath(key, params), body: body, write: true}
	if _, recurse := params["recurse"]; !recurse {
		req.routeKey = key
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	switch strings.TrimSpace(string(resp.body)) {
	case "true":
		return nil
	case "false":
		if params.Get("cas") == "0" {
			return fmt.Errorf("%w: key %q already exists (cas=0)", kv.ErrCASMismatch, key)
		}
		return fmt.Errorf("%w: key %q does not exist or was modified (cas=%s)", kv.ErrCASMismatch, key, params.Get("cas"))
	}
	return unexpected(resp)
}

// Put writes key.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) error {
	return c.writeBool(ctx, http.MethodPut, key, value, opts)
}

// Delete removes key (or, with Recurse, a prefix). Deleting an absent key
// succeeds.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) error {
	return c.writeBool(ctx, http.MethodDelete, key, nil, opts)
}

// TxnOp is one operation of a transaction, in Consul's JSON shape (the
// API's KV operation).
type TxnOp = api.KVTxnOp

// TxnError says why a transaction was rolled back.
type TxnError = api.TxnError

// TxnResponse is a transaction's answer, its results as entries.
type TxnResponse struct {
	Results []kv.Entry
	Errors  []TxnError
}

// Txn runs ops atomically. If a check fails nothing is applied and the
// error wraps kv.ErrTxnFailed; the response then lists the failures.
func (c *Client) Txn(ctx context.Context, ops []TxnOp, opts ...ReadOption) (*TxnResponse, error) {
	wrapped := make([]api.TxnOp, len(ops))
	readOnly := true
	for i, op := range ops {
		wrapped[i] = api.TxnOp{KV: &op}
		if v, err := kv.ParseVerb(op.Verb); err == nil && v.Writes() {
			readOnly = false
		}
	}
	body, err := json.Marshal(wrapped)
	if err != nil {
		return nil, err
	}
	var ro readOpts
	for _, o := range opts {
		o(&ro)
	}
	path := "/v1/txn"
	if ro.stale {
		path += "?stale"
	}
	resp, err := c.do(ctx, request{method: http.MethodPut, path: path, body: body, write: !readOnly, repeatable: readOnly})
	if err != nil {
		return nil, err
	}
	var out api.TxnResponse
	if err := decode(resp, &out); err != nil {
		return nil, err
	}
	tr := &TxnResponse{Errors: out.Errors}
	for _, r := range out.Results {
		tr.Results = append(tr.Results, r.KV.Entry())
	}
	if resp.status == http.StatusConflict && len(out.Errors) == 0 {
		return nil, unexpected(resp)
	}
	if resp.status == http.StatusConflict {
		first := out.Errors[0]
		if strings.HasPrefix(first.What, kv.ErrPermissionDenied.Error()) {
			// Consul reports a denied op as the op's error: still a denial.
			return tr, kv.Errorf(kv.ErrPermissionDenied, "op %d: %s", first.OpIndex, first.What)
		}
		return tr, fmt.Errorf("%w: %d op(s) could not apply, first: op %d: %s", kv.ErrTxnFailed, len(out.Errors), first.OpIndex, first.What)
	}
	return tr, nil
}

// Leader returns the leader's address ("" if none is known).
func (c *Client) Leader(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/status/leader", repeatable: true})
	if err != nil {
		return "", err
	}
	var addr string
	return addr, decode(resp, &addr)
}

// Members returns the raft configuration. With Stale it is the
// configuration as the node that answers knows it, which any node serves
// without a leader (its Leader flags say whom it follows, if anyone).
func (c *Client) Members(ctx context.Context, opts ...ReadOption) (kv.Configuration, error) {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	path := "/v1/operator/raft/configuration"
	if o.stale {
		path += "?stale"
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, repeatable: true})
	if err != nil {
		return kv.Configuration{}, err
	}
	var cfg kv.Configuration
	return cfg, decode(resp, &cfg)
}

// AutopilotHealth returns the leader's view of every server's health.
func (c *Client) AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/operator/autopilot/health", repeatable: true})
	if err != nil {
		return kv.AutopilotHealth{}, err
	}
	var h kv.AutopilotHealth
	return h, decode(resp, &h)
}

func (c *Client) operator(ctx context.Context, method, path string, retrySafe bool) error {
	resp, err := c.do(ctx, request{method: method, path: path, repeatable: retrySafe})
	if err == nil && resp.status == http.StatusNotFound {
		// raftkv names a server that is not a member in its 404; any other
		// 404 is not raftkv's answer.
		msg := strings.TrimSpace(string(resp.body))
		if resp.header.Get(wire.HeaderError) != kv.Code(kv.ErrUnknownPeer) && !strings.HasPrefix(msg, kv.ErrUnknownPeer.Error()) {
			return unexpected(resp)
		}
		if !strings.HasPrefix(msg, kv.ErrUnknownPeer.Error()) {
			msg = kv.ErrUnknownPeer.Error() + ": " + msg
		}
		err = kv.Errorf(kv.ErrUnknownPeer, "%s", msg)
	}
	return err
}

// Join adds a server; the leader makes it a voter once it has been healthy
// for the stabilization time (a no-op if it is already a member there).
func (c *Client) Join(ctx context.Context, id, addr string) error {
	return c.join(ctx, id, addr, true)
}

// JoinReadReplica adds a server that stays a non-voter for good.
func (c *Client) JoinReadReplica(ctx context.Context, id, addr string) error {
	return c.join(ctx, id, addr, false)
}

func (c *Client) join(ctx context.Context, id, addr string, voter bool) error {
	q := url.Values{"id": {id}, "address": {addr}, "voter": {strconv.FormatBool(voter)}}
	return c.operator(ctx, http.MethodPut, "/v1/operator/raft/peer?"+q.Encode(), true)
}

// Remove removes a server from the cluster.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.operator(ctx, http.MethodDelete, "/v1/operator/raft/peer?"+url.Values{"id": {id}}.Encode(), false)
}

// TransferLeader hands leadership to id, or to any voter if id is empty.
func (c *Client) TransferLeader(ctx context.Context, id string) error {
	path := "/v1/operator/raft/transfer-leader"
	if id != "" {
		path += "?" + url.Values{"id": {id}}.Encode()
	}
	return c.operator(ctx, http.MethodPost, path, false)
}

// SaveSnapshot writes a snapshot of the whole cluster's state to w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/snapshot", repeatable: true})
	if err != nil {
		return err
	}
	_, err = w.Write(resp.body)
	return err
}

// RestoreSnapshot replaces the whole cluster's state with a snapshot taken
// by SaveSnapshot. Restoring the same snapshot twice gives the same state,
// so it is retried like a keyed write.
func (c *Client) RestoreSnapshot(ctx context.Context, snapshot []byte) error {
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/snapshot", body: snapshot, repeatable: true})
	return err
}
