package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/reqtrace"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// Config configures a Client.
type Config struct {
	// Endpoints are node addresses ("127.0.0.1:7001" or "http://host:port").
	Endpoints []string
	// Timeout bounds one logical call, retries included, when the context
	// has no deadline (default 30s). Blocking queries add their wait.
	Timeout time.Duration
	// AttemptTimeout bounds one attempt on one endpoint (default 4s): an
	// endpoint that has not answered by then (its host is down or cut off
	// by the network) is left for the next one. A refused connection or a
	// node without a leader moves on at once. Blocking queries add their
	// wait.
	AttemptTimeout time.Duration
	// UnreachableTimeout: a call that has reached no endpoint at all (every
	// connection refused or timed out) gives up after this long instead of
	// retrying for the whole Timeout (default 5s).
	UnreachableTimeout time.Duration
	// TLS, if set, is used to reach the nodes (endpoints without a scheme
	// then mean https://). See TLSConfig.
	TLS *tls.Config
	// HTTPClient overrides the transport (default: pooled keep-alive).
	HTTPClient *http.Client
	// Token is the ACL token every request carries (X-Consul-Token);
	// empty: the anonymous token.
	Token string
}

// DefaultAttemptTimeout is above the longest a healthy node takes to
// answer: a node that lost its leader waits up to two election timeouts (1s
// with the default flags) for a new one, and a forwarded write at most 2s
// for the leader's commit.
const DefaultAttemptTimeout = 4 * time.Second

// Client is safe for concurrent use.
type Client struct {
	endpoints []string
	hc        *http.Client
	timeout   time.Duration
	attempt   time.Duration
	// unreachable bounds a call that reaches no endpoint.
	unreachable time.Duration
	token       string
	tls         *tls.Config // nil: plaintext

	mu        sync.Mutex
	preferred int             // index of the endpoint that answered last
	probed    map[string]bool // host → speaks TLS (see speaksTLS)

	routes routeCache // where writes of which keys go (routes.go)
}

// New checks the configuration and returns a client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", kv.ErrInvalid)
	}
	c := &Client{hc: cfg.HTTPClient, timeout: cfg.Timeout, attempt: cfg.AttemptTimeout, unreachable: cfg.UnreachableTimeout, token: cfg.Token, tls: cfg.TLS}
	for _, e := range cfg.Endpoints {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !strings.Contains(e, "://") {
			if cfg.TLS != nil {
				e = "https://" + e
			} else {
				e = "http://" + e
			}
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%w: bad endpoint %q", kv.ErrInvalid, e)
		}
		c.endpoints = append(c.endpoints, strings.TrimRight(e, "/"))
	}
	if len(c.endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", kv.ErrInvalid)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     cfg.TLS,
			ForceAttemptHTTP2:   cfg.TLS != nil,
		}}
	}
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	if c.attempt <= 0 {
		c.attempt = DefaultAttemptTimeout
	}
	if c.unreachable <= 0 {
		c.unreachable = 5 * time.Second
	}
	return c, nil
}

// request is one logical call, possibly sent several times.
type request struct {
	method string
	path   string // escaped path, query included
	body   []byte
	header http.Header
	write  bool // a write: carries an Idempotency-Key
	// repeatable: sending it twice has the effect of sending it once (reads,
	// keyed writes, joins), so it is retried even when its fate is unknown.
	repeatable bool
	extra      time.Duration
	// attempt, if set, bounds one attempt instead of the client's
	// AttemptTimeout: a renew must leave a silent node in time to reach
	// another before its holder's deadline.
	attempt time.Duration
	// routeKey, for a write of one key, lets the call go first to the
	// leader of the key's range (routes.go).
	routeKey string
}

// response is what a call produced.
type response struct {
	status int
	header http.Header
	body   []byte
	// method and url: the request that got this answer (for errors).
	method, url string
}

// do sends r to the endpoints in turn until one answers with something
// other than a connection failure, a timed-out attempt or a refusal that
// did nothing (no leader, shutting down; for repeatable requests also an
// unknown outcome), backing off between rounds, until the context ends.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout+r.extra)
		defer cancel()
	}
	if r.write {
		if r.header == nil {
			r.header = http.Header{}
		}
		r.header.Set("Idempotency-Key", newKey())
		r.repeatable = true
	}
	backoff := 50 * time.Millisecond
	var lastErr error
	at := c.newAttempts(r) // every endpoint's last answer, for the error
	// Endpoints whose answer retrying cannot change (a TLS mistake, not a
	// raftkv node): left out for the rest of the call, which fails with the
	// first of them once every endpoint is so.
	permanent := make([]error, len(c.endpoints))
	nPermanent := 0
	began, reached := time.Now(), false
	routed := -1 // the endpoint the key's route names, tried first once
	if r.routeKey != "" {
		routed = c.routedEndpoint(r.routeKey)
	}
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		start := c.preferred
		c.mu.Unlock()
		if attempt == 0 && routed >= 0 {
			start = routed
		}
		for i := range c.endpoints {
			ep := (start + i) % len(c.endpoints)
			if permanent[ep] != nil {
				continue
			}
			limit := c.attempt
			if r.attempt > 0 {
				limit = min(limit, r.attempt)
			}
			actx, cancel := context.WithTimeout(ctx, limit+r.extra)
			resp, err := c.send(actx, c.endpoints[ep], r)
			cancel()
			if err == nil {
				if attempt > 0 || i > 0 || routed < 0 { // a routed write says nothing of where the rest should go
					c.mu.Lock()
					c.preferred = ep
					c.mu.Unlock()
				}
				if r.routeKey != "" {
					c.learnRoute(resp)
				}
				return resp, nil
			}
			if ep == routed && retryable(err, true) { // the leader did not take it: a refusal of the write itself says nothing of the route
				c.routes.forget(r.routeKey)
			}
			lastErr = at.add(ep, err)
			if perm := c.permanent(ctx, c.endpoints[ep], err); perm != nil {
				permanent[ep] = perm
				if nPermanent++; nPermanent == len(c.endpoints) {
					return nil, firstError(permanent) // retrying cannot change it
				}
				continue
			}
			var ce *errConn
			reached = reached || !errors.As(err, &ce) || ce.sent
			if !retryable(err, r.repeatable) || ctx.Err() != nil {
				return nil, at.end(ctx, err)
			}
			c.mu.Lock()
			if c.preferred == ep { // the next call starts with the next endpoint
				c.preferred = (ep + 1) % len(c.endpoints)
			}
			c.mu.Unlock()
		}
		if !reached && time.Since(began) >= c.unreachable {
			return nil, fmt.Errorf("%w (no node reachable for %s)", lastErr, c.unreachable.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up after %s, %s)", lastErr, time.Since(began).Round(100*time.Millisecond), plural(attempt+1, "try", "tries")+" of every node")
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// errConn marks a transport failure; sent says whether the request may
// have reached the server.
type errConn struct {
	err  error
	sent bool
}

func (e *errConn) Error() string { return e.err.Error() }
func (e *errConn) Unwrap() error {
	if e.sent {
		return kv.ErrUnknownOutcome
	}
	return kv.ErrNoLeader
}

func retryable(err error, repeatable bool) bool {
	switch {
	case errors.Is(err, kv.ErrNoLeader), errors.Is(err, kv.ErrClosed):
		return true
	case errors.Is(err, kv.ErrUnknownOutcome):
		return repeatable
	}
	return false
}

func (c *Client) send(ctx context.Context, base string, r request) (*response, error) {
	ctx, trace := reqtrace.With(ctx)
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.path, bytes.NewReader(r.body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kv.ErrInvalid, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	// This client moves on to another node when one has no leader, so it
	// asks not to be held waiting for one as Consul's clients are.
	req.Header.Set(wire.HeaderFailFast, "true")
	if c.token != "" && req.Header.Get("X-Consul-Token") == "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &errConn{err: newRequestError(r.method, base, r.path, err), sent: trace.MayHaveArrived()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &errConn{err: newRequestError(r.method, base, r.path, fmt.Errorf("reading the answer: %w", err)), sent: true}
	}
	out := &response{status: resp.StatusCode, header: resp.Header, body: body, method: r.method, url: showURL(base + r.path)}
	if err := statusError(out); err != nil {
		return nil, newRequestError(r.method, base, r.path, err)
	}
	return out, nil
}

// statusError maps an HTTP answer to the store's sentinel errors (the
// inverse of httpd's table): by the error code the answer names, else by
// its status. 404 is left to callers: for a key it is not an error of the
// request.
func statusError(r *response) error {
	if r.status == http.StatusOK {
		return nil
	}
	sentinel := wire.Sentinel(r.status, r.header)
	msg := strings.TrimSpace(string(r.body))
	switch {
	case sentinel == nil && (r.status == http.StatusNotFound || r.status == http.StatusConflict || r.status == http.StatusTooManyRequests):
		return nil
	case sentinel == nil:
		return fmt.Errorf("unexpected status %d: %s", r.status, msg)
	case msg == "":
		return sentinel
	}
	// The server's reason names the error already ("No cluster leader",
	// "Permission denied: ..."): shown as it is, matched as the sentinel.
	return kv.Errorf(sentinel, "%s", msg)
}

func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Meta describes a read.
type Meta struct {
	// Index is what to pass to WaitIndex to wait for the next change.
	Index       uint64
	KnownLeader bool
	LastContact time.Duration
}

func metaOf(h http.Header) Meta {
	idx, _ := strconv.ParseUint(h.Get("X-Consul-Index"), 10, 64)
	lc, _ := strconv.ParseInt(h.Get("X-Consul-LastContact"), 10, 64)
	return Meta{Index: idx, KnownLeader: h.Get("X-Consul-KnownLeader") == "true", LastContact: time.Duration(lc) * time.Millisecond}
}

// decode reads a JSON answer into v. A 404 here (the endpoint is not
// there) or a body that is not the JSON expected is not raftkv's answer.
func decode(r *response, v any) error {
	if r.status == http.StatusNotFound {
		return unexpected(r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return unexpected(r)
	}
	return nil
}

// TLSConfig is the TLS configuration of a client from PEM files: ca
// verifies the nodes; cert and key (both, or neither) are the client's own
// certificate, needed when the nodes run with -tls-verify-incoming.
func TLSConfig(ca, cert, key string) (*tls.Config, error) {
	return tlsutil.ClientOnly(tlsutil.Files{CA: ca, Cert: cert, Key: key})
}

// TokenTransport adds Token as X-Consul-Token to every request that does
// not carry one already, for HTTP clients built outside this package (load
// generators, test harnesses) that talk to nodes with ACLs on.
type TokenTransport struct {
	Token string
	Next  http.RoundTripper // nil: http.DefaultTransport
}

func (t TokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	if t.Token != "" && r.Header.Get("X-Consul-Token") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Consul-Token", t.Token)
	}
	return next.RoundTrip(r)
}

// plural is "1 try" or "3 tries".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// firstError is the first non-nil error of errs.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
