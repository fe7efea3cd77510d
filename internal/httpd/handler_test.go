package httpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

const testMaxValue = 1024

func newTestServer(t *testing.T) (*httptest.Server, *testStore) {
	t.Helper()
	store := newTestStore(t)
	srv := httptest.NewServer(New(allOf(store), Options{MaxValueBytes: testMaxValue}))
	t.Cleanup(srv.Close)
	return srv, store
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func TestKVRoundTrip(t *testing.T) {
	srv, _ := newTestServer(t)
	if r := do(t, srv, "PUT", "/v1/kv/a/b?flags=42", "hello"); r.status != 200 || r.body != "true\n" {
		t.Fatalf("put: %+v", r)
	}
	r := do(t, srv, "GET", "/v1/kv/a/b", "")
	if r.status != 200 {
		t.Fatalf("get: %+v", r)
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.body), &entries); err != nil || len(entries) != 1 {
		t.Fatalf("get body %q: %v", r.body, err)
	}
	e := entries[0]
	if e["Key"] != "a/b" || e["Value"] != "aGVsbG8=" || e["Flags"] != float64(42) || e["LockIndex"] != float64(0) || e["Session"] != "" {
		t.Fatalf("entry: %v", e)
	}
	for _, h := range []string{"X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact", "X-Consul-Effective-Consistency"} {
		if r.header.Get(h) == "" {
			t.Fatalf("missing header %s", h)
		}
	}
	if r.header.Get("X-Consul-Index") != fmt.Sprint(e["ModifyIndex"]) {
		t.Fatalf("X-Consul-Index %s != ModifyIndex %v", r.header.Get("X-Consul-Index"), e["ModifyIndex"])
	}
	if r := do(t, srv, "GET", "/v1/kv/a/b?raw", ""); r.body != "hello" {
		t.Fatalf("raw: %+v", r)
	}
	if r := do(t, srv, "GET", "/v1/kv/a/b?stale", ""); r.header.Get("X-Consul-Effective-Consistency") != "stale" {
		t.Fatalf("stale consistency header: %v", r.header)
	}
	// Empty value is null.
	do(t, srv, "PUT", "/v1/kv/empty", "")
	if r := do(t, srv, "GET", "/v1/kv/empty", ""); !strings.Contains(r.body, `"Value":null`) {
		t.Fatalf("empty value: %s", r.body)
	}
	// 404: empty body, headers present.
	r = do(t, srv, "GET", "/v1/kv/missing", "")
	if r.status != 404 || r.body != "" || r.header.Get("X-Consul-Index") == "" || r.header.Get("X-Consul-Index") == "0" {
		t.Fatalf("missing key: %+v", r)
	}
	// CAS: wins then loses.
	idx := e["ModifyIndex"].(float64)
	if r := do(t, srv, "PUT", fmt.Sprintf("/v1/kv/a/b?cas=%d", int(idx)), "v2"); r.body != "true\n" {
		t.Fatalf("cas win: %+v", r)
	}
	if r := do(t, srv, "PUT", fmt.Sprintf("/v1/kv/a/b?cas=%d", int(idx)), "v3"); r.status != 200 || r.body != "false\n" {
		t.Fatalf("cas lose: %+v", r)
	}
	if r := do(t, srv, "PUT", "/v1/kv/a/b?cas=0", "v3"); r.body != "false\n" {
		t.Fatalf("cas=0 on existing key: %+v", r)
	}
	// Listing and key roll-up.
	do(t, srv, "PUT", "/v1/kv/a/c/d", "x")
	if r := do(t, srv, "GET", "/v1/kv/a/?keys&separator=/", ""); r.body != "[\"a/b\",\"a/c/\"]\n" {
		t.Fatalf("keys: %+v", r)
	}
	// Unclean paths: GET is redirected to the clean path, as Consul does;
	// a write is refused rather than redirected (a client would follow a
	// redirect as a GET).
	if r := do(t, srv, "PUT", "/v1/kv/x//y/../z", "odd"); r.status != 400 {
		t.Fatalf("put to an unclean path: %+v", r)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(srv.URL + "/v1/kv//x//y/../z?raw")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/v1/kv/x/z?raw" {
		t.Fatalf("get of an unclean path: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if r := do(t, srv, "GET", "/v1/kv/a/?recurse", ""); strings.Count(r.body, `"Key"`) != 2 {
		t.Fatalf("recurse: %+v", r)
	}
	if r := do(t, srv, "GET", "/v1/kv/zzz/?keys", ""); r.status != 404 {
		t.Fatalf("keys on empty prefix: %+v", r)
	}
	// Deletes.
	if r := do(t, srv, "DELETE", "/v1/kv/a/b?cas=1", ""); r.body != "false\n" {
		t.Fatalf("delete cas lose: %+v", r)
	}
	if r := do(t, srv, "DELETE", "/v1/kv/never-existed", ""); r.status != 200 || r.body != "true\n" {
		t.Fatalf("delete absent: %+v", r)
	}
	if r := do(t, srv, "DELETE", "/v1/kv/a?recurse", ""); r.body != "true\n" {
		t.Fatalf("delete tree: %+v", r)
	}
	if r := do(t, srv, "GET", "/v1/kv/a?recurse", ""); r.status != 404 {
		t.Fatalf("after delete tree: %+v", r)
	}
}

// TestStatusTable walks the status table of docs/API.md through the real handlers.
func TestStatusTable(t *testing.T) {
	long := strings.Repeat("k", kv.MaxKeyBytes+1)
	ops129 := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"set","Key":"k"}},`, 129), ",") + "]"
	cases := []struct {
		name, method, path, body string
		storeErr                 error
		want                     int
		mutates                  bool // the request reaches Apply
	}{
		{"put missing key", "PUT", "/v1/kv/", "v", nil, 400, false},
		{"delete missing key", "DELETE", "/v1/kv/", "", nil, 400, false},
		{"get missing key", "GET", "/v1/kv/", "", nil, 400, false},
		{"key too long", "PUT", "/v1/kv/" + long, "v", nil, 400, false},
		{"key too long on get", "GET", "/v1/kv/" + long, "", nil, 400, false},
		{"bad cas", "PUT", "/v1/kv/k?cas=x", "v", nil, 400, false},
		{"negative cas", "PUT", "/v1/kv/k?cas=-1", "v", nil, 400, false},
		{"bad flags", "PUT", "/v1/kv/k?flags=1.5", "v", nil, 400, false},
		{"bad delete cas", "DELETE", "/v1/kv/k?cas=abc", "", nil, 400, false},
		{"bad index", "GET", "/v1/kv/k?index=abc", "", nil, 400, false},
		{"bad wait", "GET", "/v1/kv/k?wait=forever", "", nil, 400, false},
		{"stale and consistent", "GET", "/v1/kv/k?stale&consistent", "", nil, 400, false},
		{"non-utf8 key", "PUT", "/v1/kv/%ff%fe", "v", nil, 400, false},
		{"unknown verb", "PUT", "/v1/txn", `[{"KV":{"Verb":"explode","Key":"k"}}]`, nil, 400, false},
		{"malformed txn", "PUT", "/v1/txn", `[{"KV":`, nil, 400, false},
		{"non-KV txn op", "PUT", "/v1/txn", `[{"Node":{}}]`, nil, 400, false},
		{"value over limit", "PUT", "/v1/kv/k", strings.Repeat("x", testMaxValue+1), nil, 413, false},
		{"value at limit", "PUT", "/v1/kv/k", strings.Repeat("x", testMaxValue), nil, 200, true},
		{"txn of 129 ops", "PUT", "/v1/txn", ops129, nil, 413, false},
		{"no leader on write", "PUT", "/v1/kv/k", "v", fmt.Errorf("%w: test", kv.ErrNoLeader), 500, true},
		{"no leader on read", "GET", "/v1/kv/k", "", fmt.Errorf("%w: test", kv.ErrNoLeader), 500, false},
		{"unknown outcome", "PUT", "/v1/kv/k", "v", fmt.Errorf("%w: test", kv.ErrUnknownOutcome), 500, true},
		{"unknown outcome on delete", "DELETE", "/v1/kv/k", "", fmt.Errorf("%w: test", kv.ErrUnknownOutcome), 500, true},
		{"an error of no known kind on a write", "PUT", "/v1/kv/k", "v", errors.New("badger: something broke"), 500, true},
		{"POST on kv", "POST", "/v1/kv/k", "v", nil, 405, false},
		{"PATCH on kv", "PATCH", "/v1/kv/k", "v", nil, 405, false},
		{"GET on txn", "GET", "/v1/txn", "", nil, 405, false},
		{"DELETE on leader", "DELETE", "/v1/status/leader", "", nil, 405, false},
		{"POST on peers", "POST", "/v1/status/peers", "", nil, 405, false},
		{"GET on transfer", "GET", "/v1/operator/raft/transfer-leader", "", nil, 405, false},
		{"GET on peer", "GET", "/v1/operator/raft/peer", "", nil, 405, false},
		{"peer add without address", "PUT", "/v1/operator/raft/peer?id=x", "", nil, 400, false},
		{"remove unknown peer", "DELETE", "/v1/operator/raft/peer?id=nope", "", nil, 404, false},
		{"idempotency key too long", "PUT", "/v1/kv/k", "v", nil, 400, false},
		{"acquire and cas", "PUT", "/v1/kv/k?acquire=abc&cas=0", "v", nil, 400, false},
		{"acquire without a session", "PUT", "/v1/kv/k?acquire=", "v", nil, 500, false},
		{"session TTL too short", "PUT", "/v1/session/create", `{"TTL":"5s"}`, nil, 500, false},
		{"session with a bad lock-delay", "PUT", "/v1/session/create", `{"LockDelay":"20"}`, nil, 400, false},
		{"session with a service check", "PUT", "/v1/session/create", `{"ServiceChecks":[{"ID":"x"}]}`, nil, 500, false},
		{"destroy without an id", "PUT", "/v1/session/destroy/", "", nil, 400, false},
		{"renew of an unknown session", "PUT", "/v1/session/renew/nope", "", nil, 404, false},
		{"session create by GET", "GET", "/v1/session/create", "", nil, 405, false},
		{"split on a node of one range", "POST", "/v1/operator/range/split?key=a/", "", nil, 501, false},
		{"split by GET", "GET", "/v1/operator/range/split?key=a/", "", nil, 405, false},
		{"DELETE on ranges", "DELETE", "/v1/operator/ranges", "", nil, 405, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, store := newTestServer(t)
			store.err = c.storeErr
			var hdr []string
			if c.name == "idempotency key too long" {
				hdr = []string{"Idempotency-Key", strings.Repeat("i", kv.MaxIdempotencyKeySize+1)}
			}
			r := do(t, srv, c.method, c.path, c.body, hdr...)
			if r.status != c.want {
				t.Fatalf("status %d, want %d (body %q)", r.status, c.want, r.body)
			}
			if c.want >= 400 {
				if c.want != 404 || r.body != "" { // a KV 404 has an empty body
					if strings.Count(r.body, "\n") != 1 || len(r.body) < 5 {
						t.Fatalf("reason is not one line: %q", r.body)
					}
				}
				if c.want == 503 && r.header.Get("Retry-After") != "1" {
					t.Fatal("503 without Retry-After: 1")
				}
				// Consul's words for no leader; raftkv's clients read the
				// outcome of a write from a header, never from a read.
				wantOutcome := ""
				if c.method != "GET" {
					wantOutcome = wire.OutcomeNotApplied
				}
				switch {
				case errors.Is(c.storeErr, kv.ErrNoLeader):
					if r.body != "No cluster leader\n" || r.header.Get(wire.HeaderError) != "no_leader" {
						t.Fatalf("no leader answered %q, code %q", r.body, r.header.Get(wire.HeaderError))
					}
				case errors.Is(c.storeErr, kv.ErrUnknownOutcome):
					wantOutcome = wire.OutcomeUnknown
				case c.storeErr != nil && kv.Code(c.storeErr) == "internal" && c.method != "GET":
					wantOutcome = wire.OutcomeUnknown // it may have failed after committing
				}
				if got := r.header.Get(wire.HeaderOutcome); got != wantOutcome {
					t.Fatalf("%s answered %d with outcome %q, want %q", c.method, r.status, got, wantOutcome)
				}
				if c.want == 405 && r.header.Get("Allow") == "" {
					t.Fatal("405 without Allow")
				}
			}
			if reached := store.applied > 0; reached != c.mutates {
				t.Fatalf("request reached Apply: %v, want %v", reached, c.mutates)
			}
			if c.want >= 400 && len(store.keys(t)) != 0 {
				t.Fatalf("a rejected request changed state: %v", store.keys(t))
			}
		})
	}
}

func TestTxn(t *testing.T) {
	srv, store := newTestServer(t)
	ok := `[{"KV":{"Verb":"set","Key":"a","Value":"MQ=="}},{"KV":{"Verb":"set","Key":"b","Value":"Mg==","Flags":3}},{"KV":{"Verb":"get","Key":"a"}}]`
	r := do(t, srv, "PUT", "/v1/txn", ok)
	if r.status != 200 || !strings.Contains(r.body, `"Errors":null`) || strings.Count(r.body, `"KV"`) != 3 {
		t.Fatalf("txn: %+v", r)
	}
	bad := `[{"KV":{"Verb":"set","Key":"c","Value":"Mw=="}},{"KV":{"Verb":"check-not-exists","Key":"a"}}]`
	r = do(t, srv, "PUT", "/v1/txn", bad)
	if r.status != 409 || !strings.Contains(r.body, `"Results":null`) || !strings.Contains(r.body, `"OpIndex":1`) {
		t.Fatalf("failed txn: %+v", r)
	}
	if store.has(t, "c") {
		t.Fatal("failed txn was not rolled back")
	}
	// Read-only transactions do not go through raft.
	before := store.applied
	r = do(t, srv, "PUT", "/v1/txn?stale", `[{"KV":{"Verb":"get","Key":"a"}},{"KV":{"Verb":"check-not-exists","Key":"zz"}}]`)
	if r.status != 200 || store.readTxns != 1 || store.applied != before {
		t.Fatalf("read-only txn: %+v (readTxns=%d, applies %d→%d)", r, store.readTxns, before, store.applied)
	}
}

// Consul's txn error model: a request that is not a transaction is a 400
// naming the operation and field in JSON's terms; well-formed operations
// that cannot apply are a 409 with one error per operation; nothing
// reaches the store either way.
func TestTxnErrors(t *testing.T) {
	srv, store := newTestServer(t)
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"lock without a session", `[{"KV":{"Verb":"set","Key":"a"}},{"KV":{"Verb":"lock","Key":"k"}}]`, 409,
			`{"Results":null,"Errors":[{"OpIndex":1,"What":"missing session"}]}` + "\n"},
		{"not an array", `{"KV":{}}`, 400, "invalid request: malformed transaction: want a JSON array of operations (found object)\n"},
		{"cut short", `[{"KV":`, 400, "invalid request: malformed transaction: want a JSON array of operations (the JSON ends too early)\n"},
		{"value not base64", `[{"KV":{"Verb":"get","Key":"a"}},{"KV":{"Verb":"set","Key":"a","Value":"%%%"}}]`, 400,
			"invalid request: operation 1: Value must be base64 (bad byte at 0)\n"},
		{"index as a string", `[{"KV":{"Verb":"cas","Key":"a","Index":"7"}}]`, 400,
			"invalid request: operation 0: KV.Index must be a non-negative integer, not string\n"},
		{"unknown verb", `[{"KV":{"Verb":"explode","Key":"k"}}]`, 400, "invalid request: operation 0: unknown verb \"explode\"\n"},
	}
	for _, c := range cases {
		r := do(t, srv, "PUT", "/v1/txn", c.body)
		if r.status != c.status || r.body != c.want {
			t.Errorf("%s: %d %q, want %d %q", c.name, r.status, r.body, c.status, c.want)
		}
	}
	if store.applied != 0 || store.readTxns != 0 {
		t.Fatalf("refused transactions reached the store: %d applies, %d reads", store.applied, store.readTxns)
	}
}

func TestIdempotencyKeyReachesTheStore(t *testing.T) {
	srv, store := newTestServer(t)
	do(t, srv, "PUT", "/v1/kv/a", "1", "Idempotency-Key", "k1")
	do(t, srv, "DELETE", "/v1/kv/a", "", "Idempotency-Key", "k2")
	do(t, srv, "PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"b"}}]`, "Idempotency-Key", "k3")
	if fmt.Sprint(store.idemKeys) != "[k1 k2 k3]" {
		t.Fatalf("idempotency keys seen by the store: %v", store.idemKeys)
	}
}

func TestSnapshotEndpoints(t *testing.T) {
	srv, store := newTestServer(t)
	do(t, srv, "PUT", "/v1/kv/a", "1")
	saved := do(t, srv, "GET", "/v1/snapshot", "")
	if saved.status != 200 || saved.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("save: %+v", saved)
	}
	do(t, srv, "PUT", "/v1/kv/b", "2")
	if r := do(t, srv, "PUT", "/v1/snapshot", saved.body); r.status != 200 {
		t.Fatalf("restore: %+v", r)
	}
	if keys := store.keys(t); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("state after restore: %v", keys)
	}
	if r := do(t, srv, "PUT", "/v1/snapshot", "garbage"); r.status != 400 {
		t.Fatalf("garbage restore: %+v", r)
	}
	store.err = fmt.Errorf("%w: test", kv.ErrNoLeader)
	if r := do(t, srv, "GET", "/v1/snapshot", ""); r.status != 500 || r.body != "No cluster leader\n" {
		t.Fatalf("save without leader: %+v", r)
	}
	if r := do(t, srv, "POST", "/v1/snapshot", ""); r.status != 405 {
		t.Fatalf("POST snapshot: %+v", r)
	}
}

func TestClusterEndpoints(t *testing.T) {
	srv, store := newTestServer(t)
	if r := do(t, srv, "GET", "/v1/status/leader", ""); r.body != "\"127.0.0.1:7001\"\n" {
		t.Fatalf("leader: %+v", r)
	}
	if r := do(t, srv, "GET", "/v1/status/peers", ""); r.body != "[\"127.0.0.1:7001\",\"127.0.0.1:7002\"]\n" {
		t.Fatalf("peers (voters only): %+v", r)
	}
	r := do(t, srv, "GET", "/v1/operator/raft/configuration", "")
	var cfg struct {
		Servers []struct {
			ID, Node, Address string
			Leader, Voter     bool
		}
		Index uint64
	}
	if err := json.Unmarshal([]byte(r.body), &cfg); err != nil || len(cfg.Servers) != 3 || cfg.Index != 9 || !cfg.Servers[0].Leader || cfg.Servers[0].Node != "n1" {
		t.Fatalf("configuration %q: %v", r.body, err)
	}
	r = do(t, srv, "GET", "/v1/operator/autopilot/health", "")
	var health struct {
		Healthy          bool
		FailureTolerance int
		Servers          []struct {
			ID, LastContact string
			Leader, Voter   bool
			Healthy         bool
		}
	}
	if err := json.Unmarshal([]byte(r.body), &health); err != nil || r.status != 200 || !health.Healthy || health.FailureTolerance != 1 ||
		len(health.Servers) != 3 || !health.Servers[0].Leader || health.Servers[0].LastContact != "0s" {
		t.Fatalf("autopilot health %d %q: %v", r.status, r.body, err)
	}
	if r := do(t, srv, "PUT", "/v1/operator/raft/peer?id=n4&address=127.0.0.1:7004", ""); r.status != 200 {
		t.Fatalf("add peer: %+v", r)
	}
	if r := do(t, srv, "DELETE", "/v1/operator/raft/peer?address=127.0.0.1:7004", ""); r.status != 200 {
		t.Fatalf("remove peer by address: %+v", r)
	}
	if r := do(t, srv, "POST", "/v1/operator/raft/transfer-leader?id=n2", ""); r.status != 200 || !strings.Contains(r.body, `"Success":true`) {
		t.Fatalf("transfer: %+v", r)
	}
	if r := do(t, srv, "GET", "/healthz", ""); r.status != 200 {
		t.Fatalf("healthz: %+v", r)
	}
	if r := do(t, srv, "GET", "/readyz", ""); r.status != 200 {
		t.Fatalf("readyz: %+v", r)
	}
	store.ready = false
	if r := do(t, srv, "GET", "/readyz", ""); r.status != 503 {
		t.Fatalf("readyz when not ready: %+v", r)
	}
	do(t, srv, "PUT", "/v1/kv/x", "1")
	r = do(t, srv, "GET", "/metrics", "")
	if r.status != 200 || !strings.Contains(r.body, `raftkv_http_requests_total{code="200",method="PUT",route="kv"} 1`) {
		t.Fatalf("metrics missing the HTTP counter:\n%.2000s", r.body)
	}
	if r := do(t, srv, "GET", "/v1/nope", ""); r.status != 404 {
		t.Fatalf("unknown endpoint: %+v", r)
	}
}

// A request is held for a leader as Consul holds it (its RPC hold timeout),
// unless it asks to be answered at once so that it can try another node.
func TestLeaderHold(t *testing.T) {
	srv, store := newTestServer(t)
	before := time.Now()
	do(t, srv, "GET", "/v1/kv/k", "")
	if hold := store.holdUntil.Sub(before); hold < kv.DefaultLeaderHold || hold > kv.DefaultLeaderHold+time.Minute {
		t.Fatalf("a Consul client's read is held for %v, want %v", hold, kv.DefaultLeaderHold)
	}
	do(t, srv, "GET", "/v1/kv/k", "", wire.HeaderFailFast, "true")
	if !store.holdUntil.IsZero() {
		t.Fatalf("a fail-fast read is held until %v", store.holdUntil)
	}
}

// Bad JSON is explained in JSON's terms: no Go type or package names.
func TestDecodeErrorsSpeakJSON(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, c := range []struct{ path, body, want string }{
		{"/v1/session/create", `{"Name":5}`, "Name must be a string, not number"},
		{"/v1/session/create", `[1]`, "found array"},
		{"/v1/txn", `{"KV":1}`, "found object"},
		{"/v1/txn", `[{"KV":{"Verb":"set","Key":"a","Flags":-1}}]`, "KV.Flags must be a non-negative integer, not number -1"},
	} {
		r := do(t, srv, "PUT", c.path, c.body)
		if r.status != 400 || !strings.Contains(r.body, c.want) || strings.Contains(r.body, "Go value") || strings.Contains(r.body, "httpd.") {
			t.Errorf("PUT %s %s: %d %q, want 400 saying %q", c.path, c.body, r.status, r.body, c.want)
		}
	}
}

// A store left out is a wiring mistake, found when the handler is built
// rather than by the first request that needs it.
func TestNewRefusesAMissingStore(t *testing.T) {
	stores := allOf(newTestStore(t))
	stores.Sessions = nil
	defer func() {
		if p := recover(); p != "httpd.New: Stores.Sessions is nil" {
			t.Fatalf("New without a session store: %v", p)
		}
	}()
	New(stores, Options{})
}
