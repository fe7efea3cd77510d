package httpd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// fakeRanges is a RangeStore over a fixed list. A split cuts the range
// holding the key as the backend would (the left half keeps the ID, the
// right one gets the next), or answers err; splits records every key
// that reached it.
type fakeRanges struct {
	mu     sync.Mutex
	ranges []api.Range
	err    error
	splits []string
	kept   map[string]bool
}

func (f *fakeRanges) KeepWhole(_ context.Context, prefix string, keep bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if f.kept == nil {
		f.kept = map[string]bool{}
	}
	f.kept[prefix] = keep
	return nil
}

func (f *fakeRanges) Ranges(context.Context) ([]api.Range, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return append([]api.Range(nil), f.ranges...), nil
}

func (f *fakeRanges) SplitRange(_ context.Context, key string) (api.RangeSplit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.splits = append(f.splits, key)
	if f.err != nil {
		return api.RangeSplit{}, f.err
	}
	for i, r := range f.ranges {
		if key > r.Start && (r.End == "" || key < r.End) {
			left, right := r, r
			left.End, right.Start = key, key
			left.Generation++
			right.Generation++
			right.ID = uint64(len(f.ranges))
			right.Leader, right.Keys, right.Bytes, right.WritesPerSec = "", 0, 0, 0
			f.ranges = append(f.ranges[:i], append([]api.Range{left, right}, f.ranges[i+1:]...)...)
			return api.RangeSplit{Left: left, Right: right}, nil
		}
	}
	return api.RangeSplit{}, kv.Errorf(kv.ErrInvalid, "split key %q is not inside a range", key)
}

// Route names the range holding key, its leader at "<node>:7000".
func (f *fakeRanges) Route(key string) (api.Route, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.ranges {
		if key >= r.Start && (r.End == "" || key < r.End) && r.Leader != "" {
			return api.Route{Range: r.ID, Generation: r.Generation, Start: r.Start, End: r.End, Leader: r.Leader + ":7000"}, true
		}
	}
	return api.Route{}, false
}

func newFakeRanges() *fakeRanges {
	return &fakeRanges{ranges: []api.Range{{ID: 0, Generation: 1,
		Replicas: []api.RangeReplica{{Node: "n1", Voter: true}, {Node: "n2", Voter: true}, {Node: "n3"}},
		Leader:   "n1", Keys: 42, Bytes: 4096, WritesPerSec: 3.5}}}
}

// newRangeServer is newTestServer with rs as its RangeStore.
func newRangeServer(t *testing.T, rs RangeStore) *httptest.Server {
	t.Helper()
	stores := allOf(newTestStore(t))
	stores.Ranges = rs
	srv := httptest.NewServer(New(stores, Options{MaxValueBytes: testMaxValue}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRangeEndpoints(t *testing.T) {
	rs := newFakeRanges()
	srv := newRangeServer(t, rs)

	r := do(t, srv, "GET", "/v1/operator/ranges", "")
	var got []api.Range
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != 200 || !reflect.DeepEqual(got, rs.ranges) ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("ranges: %d %q: %v", r.status, r.body, err)
	}

	r = do(t, srv, "POST", "/v1/operator/range/split?key=m/", "")
	var split api.RangeSplit
	if err := json.Unmarshal([]byte(r.body), &split); err != nil || r.status != 200 ||
		split.Left.ID != 0 || split.Left.End != "m/" || split.Right.ID != 1 || split.Right.Start != "m/" || split.Right.End != "" ||
		split.Right.Generation != 2 || len(split.Right.Replicas) != 3 {
		t.Fatalf("split: %d %q: %v", r.status, r.body, err)
	}
	// PUT too: Consul's clients send their operator writes as PUT.
	if r := do(t, srv, "PUT", "/v1/operator/range/split?key=t/", ""); r.status != 200 || !strings.Contains(r.body, `"Start":"t/"`) {
		t.Fatalf("split by PUT: %+v", r)
	}
	if r := do(t, srv, "GET", "/v1/operator/ranges", ""); strings.Count(r.body, `"ID"`) != 3 {
		t.Fatalf("ranges after two splits: %q", r.body)
	}
	if !reflect.DeepEqual(rs.splits, []string{"m/", "t/"}) {
		t.Fatalf("splits that reached the store: %q", rs.splits)
	}
}

// Every refusal is the API's: a status, one line saying why, the error's
// code, and for a split, whether it was applied. A refused split does
// not reach the store unless the store is the one refusing.
func TestRangeSplitRefusals(t *testing.T) {
	for _, c := range []struct {
		name, method, path string
		storeErr           error
		status             int
		code, says         string
		reached            bool
		outcome            string
	}{
		{"no key", "POST", "/v1/operator/range/split", nil, 400, "invalid", "need a key query parameter", false, wire.OutcomeNotApplied},
		{"empty key", "POST", "/v1/operator/range/split?key=", nil, 400, "invalid", "need a key query parameter", false, wire.OutcomeNotApplied},
		{"key not UTF-8", "POST", "/v1/operator/range/split?key=%ff/", nil, 400, "invalid", "not valid UTF-8", false, wire.OutcomeNotApplied},
		{"key too long", "POST", "/v1/operator/range/split?key=" + strings.Repeat("k", kv.MaxKeyBytes) + "/", nil, 400, "invalid", "limit", false, wire.OutcomeNotApplied},
		{"the store's rule", "POST", "/v1/operator/range/split?key=m", kv.Errorf(kv.ErrInvalid, `split key "m" must end with "/"`),
			400, "invalid", `split key "m" must end with "/"`, true, wire.OutcomeNotApplied},
		{"no leader", "POST", "/v1/operator/range/split?key=m/", fmt.Errorf("%w: range 0", kv.ErrNoLeader), 500, "no_leader", "No cluster leader", true, wire.OutcomeNotApplied},
		{"lost track", "POST", "/v1/operator/range/split?key=m/", fmt.Errorf("%w: leadership lost", kv.ErrUnknownOutcome), 500, "unknown_outcome", "leadership lost", true, wire.OutcomeUnknown},
		{"listing fails", "GET", "/v1/operator/ranges", fmt.Errorf("%w: test", kv.ErrClosed), 503, "closed", "node closed", false, ""},
		{"split by GET", "GET", "/v1/operator/range/split?key=m/", nil, 405, "", "not allowed", false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := newFakeRanges()
			rs.err = c.storeErr
			r := do(t, newRangeServer(t, rs), c.method, c.path, "")
			if r.status != c.status || strings.Count(r.body, "\n") != 1 || !strings.Contains(r.body, c.says) ||
				r.header.Get(wire.HeaderError) != c.code || r.header.Get(wire.HeaderOutcome) != c.outcome {
				t.Fatalf("%d %q (code %q, outcome %q), want %d saying %q (code %q, outcome %q)", r.status, r.body,
					r.header.Get(wire.HeaderError), r.header.Get(wire.HeaderOutcome), c.status, c.says, c.code, c.outcome)
			}
			if strings.Contains(r.body, "httpd.") || strings.Contains(r.body, "api.") {
				t.Fatalf("the reason names Go types: %q", r.body)
			}
			if reached := len(rs.splits) > 0; reached != c.reached {
				t.Fatalf("the split reached the store: %v, want %v", reached, c.reached)
			}
		})
	}
}

// A node that runs the keyspace as one range (no RangeStore) lists no
// ranges and cannot split.
func TestRangesWithoutAStore(t *testing.T) {
	srv, _ := newTestServer(t)
	if r := do(t, srv, "GET", "/v1/operator/ranges", ""); r.status != 200 || r.body != "[]\n" {
		t.Fatalf("ranges: %+v", r)
	}
	for _, path := range []string{"/v1/operator/range/split?key=m/", "/v1/operator/range/split"} {
		r := do(t, srv, "POST", path, "")
		if r.status != 501 || r.header.Get(wire.HeaderError) != "not_implemented" || strings.Count(r.body, "\n") != 1 ||
			!strings.Contains(r.body, "one range") {
			t.Fatalf("split %s: %+v", path, r)
		}
	}
	// A store with nothing to list still answers a list.
	rs := &fakeRanges{}
	if r := do(t, newRangeServer(t, rs), "GET", "/v1/operator/ranges", ""); r.status != 200 || r.body != "[]\n" {
		t.Fatalf("ranges of a store that lists nil: %+v", r)
	}
}

// Listing needs operator:read, splitting operator:write, as every other
// operator endpoint; a refused split never reaches the store.
func TestRangeEndpointsNeedOperator(t *testing.T) {
	store := newACLStore(t, true)
	rs := newFakeRanges()
	stores := allOf(store)
	stores.Ranges = rs
	srv := httptest.NewServer(New(stores, Options{MaxValueBytes: testMaxValue}))
	t.Cleanup(srv.Close)

	// global-read-only: operator:read, not write.
	if r := do(t, srv, "GET", "/v1/operator/ranges", "", "X-Consul-Token", roSecret); r.status != 200 {
		t.Fatalf("read-only token lists ranges: %+v", r)
	}
	for _, method := range []string{"POST", "PUT"} {
		r := do(t, srv, method, "/v1/operator/range/split?key=m/", "", "X-Consul-Token", roSecret)
		if r.status != 403 || strings.TrimSpace(r.body) != "Permission denied: token with AccessorID '"+roAccessor+"' lacks permission 'operator:write'" {
			t.Fatalf("read-only token splits by %s: %+v", method, r)
		}
	}
	// A token for app/ keys only: no operator rights at all.
	if r := do(t, srv, "GET", "/v1/operator/ranges", "", "X-Consul-Token", appSecret); r.status != 403 || !strings.Contains(r.body, "'operator:read'") {
		t.Fatalf("app token lists ranges: %+v", r)
	}
	if r := do(t, srv, "POST", "/v1/operator/range/split?key=m/", ""); r.status != 403 || !strings.Contains(r.body, "anonymous token lacks permission 'operator:write'") {
		t.Fatalf("anonymous split: %+v", r)
	}
	if len(rs.splits) != 0 {
		t.Fatalf("refused splits reached the store: %q", rs.splits)
	}
	if r := do(t, srv, "POST", "/v1/operator/range/split?key=m/", "", "X-Consul-Token", rootSecret); r.status != 200 || len(rs.splits) != 1 {
		t.Fatalf("management token splits: %+v", r)
	}
}

func TestRangeKeepWhole(t *testing.T) {
	rs := newFakeRanges()
	srv := newRangeServer(t, rs)
	if r := do(t, srv, "PUT", "/v1/operator/range/keep-whole?prefix=svc/web/", ""); r.status != 200 || strings.TrimSpace(r.body) != "true" {
		t.Fatalf("keep-whole: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "DELETE", "/v1/operator/range/keep-whole?prefix=svc/db/", ""); r.status != 200 {
		t.Fatalf("let go: %d %s", r.status, r.body)
	}
	if !rs.kept["svc/web/"] || rs.kept["svc/db/"] {
		t.Fatalf("store saw %v", rs.kept)
	}
	if r := do(t, srv, "PUT", "/v1/operator/range/keep-whole", ""); r.status != 400 || !strings.Contains(r.body, "need a prefix") {
		t.Fatalf("no prefix: %d %s", r.status, r.body)
	}
	rs.err = kv.Errorf(kv.ErrInvalid, "prefix %q is split already", "u")
	if r := do(t, srv, "PUT", "/v1/operator/range/keep-whole?prefix=u", ""); r.status != 400 || !strings.Contains(r.body, "split already") {
		t.Fatalf("a prefix split already: %d %s", r.status, r.body)
	}
	if r := do(t, newRangeServer(t, nil), "PUT", "/v1/operator/range/keep-whole?prefix=a/", ""); r.status != 501 {
		t.Fatalf("without ranges: %d %s", r.status, r.body)
	}
}

// A write's answer names its key's range and that range's leader (the Go
// client routes by it); a delete of a prefix, which may span ranges, and
// a read name none.
func TestWritesNameTheirRoute(t *testing.T) {
	rs := newFakeRanges()
	srv := newRangeServer(t, rs)
	if r := do(t, srv, "POST", "/v1/operator/range/split?key=m/", ""); r.status != 200 {
		t.Fatalf("split: %d %s", r.status, r.body)
	}
	rs.mu.Lock()
	rs.ranges[1].Leader = "n2"
	rs.mu.Unlock()
	for _, c := range []struct {
		method, path string
		want         api.Route
	}{
		{"PUT", "/v1/kv/a", api.Route{Range: 0, Generation: 2, End: "m/", Leader: "n1:7000"}},
		{"PUT", "/v1/kv/m/x?cas=0", api.Route{Range: 1, Generation: 2, Start: "m/", Leader: "n2:7000"}},
		{"DELETE", "/v1/kv/z", api.Route{Range: 1, Generation: 2, Start: "m/", Leader: "n2:7000"}},
	} {
		r := do(t, srv, c.method, c.path, "v")
		got, ok := api.ParseRoute(r.header.Get(api.RouteHeader))
		if r.status != 200 || !ok || got != c.want {
			t.Errorf("%s %s: %d, route %q (%+v), want %+v", c.method, c.path, r.status, r.header.Get(api.RouteHeader), got, c.want)
		}
	}
	for _, c := range [][2]string{{"DELETE", "/v1/kv/?recurse"}, {"GET", "/v1/kv/a"}} {
		if r := do(t, srv, c[0], c[1], ""); r.header.Get(api.RouteHeader) != "" {
			t.Errorf("%s %s names a route: %q", c[0], c[1], r.header.Get(api.RouteHeader))
		}
	}
}

// With ACLs, only a token that may list the ranges (operator:read) is told
// a write's route: the range's bounds are keys outside what an app's token
// may see.
func TestRoutesOnlyForOperatorRead(t *testing.T) {
	store := newACLStore(t, true)
	stores := allOf(store)
	stores.Ranges = newFakeRanges()
	srv := httptest.NewServer(New(stores, Options{MaxValueBytes: testMaxValue}))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		token string
		want  bool
	}{{rootSecret, true}, {appSecret, false}} {
		r := do(t, srv, "PUT", "/v1/kv/app/x", "v", "X-Consul-Token", c.token)
		if got := r.header.Get(api.RouteHeader) != ""; r.status != 200 || got != c.want {
			t.Errorf("token %s: %d, route %q", c.token, r.status, r.header.Get(api.RouteHeader))
		}
	}
}
