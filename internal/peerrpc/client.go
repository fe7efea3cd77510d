package peerrpc

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
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/reqtrace"
	"github.com/raftkv/raftkv/kv"
)

// Client calls other nodes over pooled keep-alive connections, for one
// raft group (see Group).
type Client struct {
	hc     *http.Client
	secret func() string
	group  uint64
}

// SecretHeader carries the node-to-node credential when there is no TLS
// (ACLs on): the cluster's peer secret.
const SecretHeader = "X-Raftkv-Peer-Secret"

// NewClient dials with dial (the node's mux, which knows how to reach the
// shared port) and presents secret() in SecretHeader when it is not empty.
func NewClient(dial func(ctx context.Context, network, addr string) (net.Conn, error), secret func() string) *Client {
	return &Client{secret: secret, hc: &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}}
}

// Group is a client for the calls of another raft group, sharing c's
// connections.
func (c *Client) Group(group uint64) *Client {
	g := *c
	g.group = group
	return &g
}

// HTTP is the pooled client, for calls to the public API of a peer.
func (c *Client) HTTP() *http.Client { return c.hc }

// Close drops the idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) call(ctx context.Context, method, addr, path string, body io.Reader, size int64) (*response, error) {
	ctx, trace := reqtrace.With(ctx)
	rc := io.NopCloser(body)
	if size == 0 {
		rc = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+Prefix+path, rc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kv.ErrInvalid, err)
	}
	req.ContentLength = size
	if sec := c.secret(); sec != "" {
		req.Header.Set(SecretHeader, sec)
	}
	if c.group != 0 {
		req.Header.Set(GroupHeader, strconv.FormatUint(c.group, 10))
	}
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set(timeoutHeader, strconv.FormatInt(max(time.Until(d).Milliseconds(), 1), 10))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if trace.MayHaveArrived() {
			return nil, fmt.Errorf("%w: %s %s: %v", kv.ErrUnknownOutcome, method, addr, err)
		}
		return nil, fmt.Errorf("%w: cannot reach leader %s: %v", kv.ErrNoLeader, addr, err)
	}
	defer resp.Body.Close()
	var out response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: bad answer from %s (status %d): %v", kv.ErrUnknownOutcome, addr, resp.StatusCode, err)
	}
	if out.Code != "" {
		err := kv.FromCode(out.Code, out.Error)
		if resp.StatusCode == http.StatusForbidden && errors.Is(err, kv.ErrPermissionDenied) {
			// Refused at the door (this node is not yet known as a peer,
			// e.g. it joined and has not applied the credential): nothing
			// was done.
			return nil, fmt.Errorf("%w: %s refused this node: %v", kv.ErrNoLeader, addr, err)
		}
		return nil, err
	}
	return &out, nil
}

// get makes a call that changes nothing: its failure is never an unknown
// outcome (a read must not be answered "the write may have been applied").
func (c *Client) get(ctx context.Context, addr, path string) (*response, error) {
	out, err := c.call(ctx, http.MethodGet, addr, path, nil, 0)
	return out, repeatable(err)
}

// repeatable: a call that changes nothing (or can be repeated) has no
// outcome to lose; a failure after sending is just "not done".
func repeatable(err error) error {
	if errors.Is(err, kv.ErrUnknownOutcome) {
		return fmt.Errorf("%w: %v", kv.ErrNoLeader, err)
	}
	return err
}

// Apply forwards a write (in the state machine's encoding) to the leader
// at addr, with the range's generation as this node knows it (older
// servers ignore it).
func (c *Client) Apply(ctx context.Context, addr string, generation uint64, body []byte) (*kv.Result, error) {
	path := "apply"
	if generation != 0 {
		path += "?generation=" + strconv.FormatUint(generation, 10)
	}
	out, err := c.call(ctx, http.MethodPost, addr, path, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, err
	}
	if out.Result == nil {
		return nil, fmt.Errorf("%w: empty answer from %s", kv.ErrUnknownOutcome, addr)
	}
	return out.Result, nil
}

// ReadIndex asks the leader at addr for a read index, vouching with self.
func (c *Client) ReadIndex(ctx context.Context, addr string, self Voucher) (uint64, error) {
	q := url.Values{"id": {self.ID}, "term": {strconv.FormatUint(self.Term, 10)}}
	out, err := c.get(ctx, addr, "readindex?"+q.Encode())
	if err != nil {
		return 0, repeatable(err)
	}
	return out.Index, nil
}

// Term asks server id at addr for its current term (a leadership probe).
func (c *Client) Term(ctx context.Context, addr, id string) (uint64, error) {
	out, err := c.get(ctx, addr, "term?id="+url.QueryEscape(id))
	if err != nil {
		return 0, err
	}
	return out.Term, nil
}

// Membership forwards a membership change to the leader at addr.
func (c *Client) Membership(ctx context.Context, addr string, req Membership) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, http.MethodPost, addr, "membership", bytes.NewReader(body), int64(len(body)))
	return err
}

// Restore uploads a snapshot of size bytes to the leader at addr.
func (c *Client) Restore(ctx context.Context, addr string, body io.Reader, size int64) error {
	_, err := c.call(ctx, http.MethodPost, addr, "restore", body, size)
	return err
}

// Renew asks the leader at addr to restart a session's TTL.
func (c *Client) Renew(ctx context.Context, addr, id string) (kv.Session, error) {
	out, err := c.call(ctx, http.MethodPut, addr, "renew?id="+url.QueryEscape(id), nil, 0)
	if err != nil {
		return kv.Session{}, repeatable(err)
	}
	if out.Session == nil {
		return kv.Session{}, fmt.Errorf("%w: empty answer from %s", kv.ErrNoLeader, addr)
	}
	return *out.Session, nil
}

// Stats asks the server at addr for its raft stats.
func (c *Client) Stats(ctx context.Context, addr string) (autopilot.Stats, error) {
	out, err := c.get(ctx, addr, "stats")
	if err != nil {
		return autopilot.Stats{}, err
	}
	if out.Stats == nil {
		return autopilot.Stats{}, fmt.Errorf("stats from %s: empty answer", addr)
	}
	return *out.Stats, nil
}

// AutopilotHealth asks the leader at addr for its health report.
func (c *Client) AutopilotHealth(ctx context.Context, addr string) (kv.AutopilotHealth, error) {
	out, err := c.get(ctx, addr, "autopilot-health")
	if err != nil {
		return kv.AutopilotHealth{}, err
	}
	if out.Health == nil {
		return kv.AutopilotHealth{}, fmt.Errorf("%w: autopilot health from %s: empty answer", kv.ErrNoLeader, addr)
	}
	return *out.Health, nil
}
