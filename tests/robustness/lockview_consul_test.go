package robustness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// The consul/api holder of TestLockHoldersView: Consul's own Go client,
// unchanged, holding a lock the way its users do,
//
//	l, _ := client.LockOpts(&api.LockOptions{Key: key, SessionTTL: ttl})
//	lost, _ := l.Lock(nil)
//
// with consul/api's defaults for everything else: lock-delay (the server's,
// 15s), MonitorRetries 0. It keeps no deadline of its own: it learns that
// it lost its lock only when its monitor (a consistent blocking query on the
// key) sees the key change or fails. docs/API.md promises that through a
// node cut off from the leader that query fails within a few seconds, and
// that the lock cannot move sooner than TTL/2 + lock-delay after the cut:
// so this holder, too, must be told before the cluster releases its lock.

// consulHolder is a holder or contender using consul/api's Lock.
type consulHolder struct {
	spec      keySpec
	name      string // "holder via n2"
	contender bool
	cl        *consul.Client
	tap       *sessionTap // its sessions and renews
	monitor   *monitorTap // its lock monitor's queries
	ttl       time.Duration

	mu   sync.Mutex
	held *tenure // set once it holds
}

// newConsulHolder makes a consul/api client whose only address is addr (one
// node: consul/api talks to one agent).
//
// Its HTTP client has no overall timeout, as consul/api's own default: the
// test does not need one to finish. The partition cuts the nodes off from
// each other, never the test process from a node, so every request the
// client makes is answered: the monitor's query on the node cut off fails
// (the promise under test), renews and writes through it fail once the
// node's apply timeout runs out, and after Unlock the monitor's query ends
// when the release changes the key. The promise is about a client whose
// node is cut off, not about the client itself.
func newConsulHolder(s keySpec, name string, contender bool, addr string, ttl time.Duration) (*consulHolder, error) {
	tap := newSessionTap()
	mon := &monitorTap{next: tap}
	cl, err := consul.NewClient(&consul.Config{Address: addr, HttpClient: &http.Client{Transport: mon}})
	if err != nil {
		return nil, err
	}
	return &consulHolder{spec: s, name: name, contender: contender, cl: cl, tap: tap, monitor: mon, ttl: ttl}, nil
}

func (h *consulHolder) acquired() (tenure, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		return tenure{}, false
	}
	return *h.held, true
}

// run takes the lock (trying again after errors until ctx ends), then
// records the holding: from when Lock returned until the channel it
// returned closes (told), or until ctx ends (then it unlocks).
func (h *consulHolder) run(ctx context.Context, hist *viewHistory, logf func(string, ...any)) {
	l, lost := h.lock(ctx, logf)
	if lost == nil {
		return
	}
	start := now()
	t := h.tenure()
	h.mu.Lock()
	h.held = &t
	h.mu.Unlock()
	x := holding{Key: h.spec.name, Holder: h.name, Start: start, Tenure: t}
	select {
	case <-lost:
		x.End, x.Told, x.How = now(), true, "told"
	case <-ctx.Done():
		x.End, x.How = now(), "unlocked"
	}
	hist.addHolding(x)
	// What an application does once told (or done): Unlock, which stops
	// the session's renewer (it then destroys the session). Cut off, the
	// release fails; the cluster expires the session.
	if err := l.Unlock(); err != nil && !x.Told {
		logf("%s %s: unlock: %v", h.spec.name, h.name, err)
	}
	// The monitor closes lost when its query returns: it has if told;
	// otherwise the release just made changes the key it waits on.
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		logf("%s %s: consul/api's lock monitor still waiting 30s after Unlock", h.spec.name, h.name)
	}
}

// lock calls consul/api's Lock until it holds the lock: the holder as
// Lock(nil), an application that waits for its lock for good (nobody else
// holds the key when it starts); the contender with ctx's end as stopCh,
// since it may wait for the whole run (it stops at its next poll).
func (h *consulHolder) lock(ctx context.Context, logf func(string, ...any)) (*consul.Lock, <-chan struct{}) {
	var stop <-chan struct{}
	if h.contender {
		stop = ctx.Done()
	}
	for ctx.Err() == nil {
		l, err := h.cl.LockOpts(&consul.LockOptions{Key: h.spec.lockKey(), SessionTTL: h.ttl.String()})
		if err != nil {
			logf("%s %s: %v", h.spec.name, h.name, err)
			return nil, nil
		}
		lost, err := l.Lock(stop)
		switch {
		case err == nil && lost != nil:
			return l, lost
		case err == nil: // stopped
			return nil, nil
		}
		logf("%s %s: %v (trying again)", h.spec.name, h.name, err)
		select { // a client's pause before trying again
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil, nil
}

// tenure is the lock's session (the last one the client created: Lock
// makes one per call) and, if a consistent read shows the key still
// held by it, its LockIndex.
func (h *consulHolder) tenure() tenure {
	t := tenure{Session: h.tap.session()}
	pair, _, err := h.cl.KV().Get(h.spec.lockKey(), &consul.QueryOptions{RequireConsistent: true})
	if err == nil && pair != nil && t.Session != "" && pair.Session == t.Session {
		t.Index = pair.LockIndex
	}
	return t
}

// monitorTap records the consistent reads of a consul/api client (in its
// Lock, only the monitor's blocking query asks for consistency): when the
// monitor's last query was sent and how it ended, for the report.
type monitorTap struct {
	next http.RoundTripper
	mu   sync.Mutex
	last monitorCall
}

type monitorCall struct {
	Sent, Done time.Time
	Status     int    // 0: no answer
	Error      string // the transport's error, or the body of a failing answer
}

func (m *monitorTap) RoundTrip(r *http.Request) (*http.Response, error) {
	monitor := r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/") && r.URL.Query().Has("consistent")
	sent := now()
	resp, err := m.next.RoundTrip(r)
	if !monitor {
		return resp, err
	}
	c := monitorCall{Sent: sent}
	switch {
	case err != nil:
		c.Error = err.Error()
	case resp.StatusCode != 200 && resp.StatusCode != 404:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		c.Error = strings.TrimSpace(string(body))
	}
	if resp != nil {
		c.Status = resp.StatusCode
	}
	c.Done = now()
	m.mu.Lock()
	m.last = c
	m.mu.Unlock()
	return resp, err
}

// lastCall is the monitor's last query that returned.
func (m *monitorTap) lastCall() (monitorCall, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, !m.last.Sent.IsZero()
}

// describe says how the monitor's last query ended.
func (c monitorCall) describe(rel func(time.Time) string) string {
	what := fmt.Sprintf("answered %d", c.Status)
	if c.Status == 0 {
		what = "failed"
	}
	if c.Error != "" {
		what += fmt.Sprintf(" (%s)", c.Error)
	}
	return fmt.Sprintf("its monitor's last query, sent at %s, %s at %s", rel(c.Sent), what, rel(c.Done))
}
