package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/raftkv/raftkv/internal/wire"
)

// HTTPDriver drives a raftkv node through its Consul-compatible HTTP API,
// without retries: every failure is counted.
type HTTPDriver struct {
	base  string
	hc    *http.Client
	stale bool
	query string // added to every read (WithReadQuery)
}

// WithReadQuery adds q to every read: "consistent" for Consul, whose
// default reads are not linearizable.
func (d *HTTPDriver) WithReadQuery(q string) *HTTPDriver { d.query = q; return d }

// NewHTTPDriver talks to endpoint ("host:port"); stale reads skip the
// linearizability round. hc should keep connections alive.
func NewHTTPDriver(endpoint string, stale bool, hc *http.Client) *HTTPDriver {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	return &HTTPDriver{base: strings.TrimRight(endpoint, "/"), hc: hc, stale: stale}
}

func (d *HTTPDriver) do(ctx context.Context, method, path string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(wire.HeaderFailFast, "true") // count a leaderless node's refusals, not its holds
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		if sentinel := wire.Sentinel(resp.StatusCode, resp.Header); sentinel != nil {
			return 0, nil, sentinel
		}
	}
	return resp.StatusCode, b, err
}

func (d *HTTPDriver) Read(ctx context.Context, key string) error {
	_, _, err := d.read(ctx, key)
	return err
}

// read returns the key's ModifyIndex (0 if absent).
func (d *HTTPDriver) read(ctx context.Context, key string) (uint64, bool, error) {
	path := "/v1/kv/" + key
	switch {
	case d.stale:
		path += "?stale"
	case d.query != "":
		path += "?" + d.query
	}
	status, body, err := d.do(ctx, http.MethodGet, path, nil)
	switch {
	case err != nil:
		return 0, false, err
	case status == http.StatusNotFound:
		return 0, false, nil
	case status != http.StatusOK:
		return 0, false, fmt.Errorf("GET %s: status %d", key, status)
	}
	var entries []struct{ ModifyIndex uint64 }
	if err := json.Unmarshal(body, &entries); err != nil || len(entries) != 1 {
		return 0, false, fmt.Errorf("GET %s: bad answer: %v", key, err)
	}
	return entries[0].ModifyIndex, true, nil
}

func (d *HTTPDriver) Write(ctx context.Context, key string, value []byte) error {
	return d.put(ctx, "/v1/kv/"+key, value)
}

func (d *HTTPDriver) CAS(ctx context.Context, key string, value []byte) error {
	idx, _, err := d.read(ctx, key)
	if err != nil {
		return err
	}
	return d.put(ctx, "/v1/kv/"+key+"?cas="+strconv.FormatUint(idx, 10), value)
}

func (d *HTTPDriver) put(ctx context.Context, path string, value []byte) error {
	status, body, err := d.do(ctx, http.MethodPut, path, strings.NewReader(string(value)))
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("PUT: status %d: %s", status, strings.TrimSpace(string(body)))
	}
	return nil // "false" from a lost CAS is a normal outcome
}

func (d *HTTPDriver) Close() error { return nil }
