package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/kv"
)

var testSplit = RangeSplit{
	Left:  Range{ID: 0, End: "m/", Generation: 2, Replicas: []RangeReplica{{Node: "n1", Voter: true}, {Node: "n3"}}, Leader: "n1", Keys: 5, Bytes: 80, WritesPerSec: 1.5},
	Right: Range{ID: 4, Start: "m/", Generation: 2, Replicas: []RangeReplica{{Node: "n1", Voter: true}, {Node: "n3"}}},
}

// rangeNode answers the range endpoints as a node does, recording what
// it was asked.
type rangeNode struct {
	mu       sync.Mutex
	requests []*http.Request // without their bodies
}

func (n *rangeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	n.requests = append(n.requests, r.Clone(context.Background()))
	n.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/operator/ranges":
		json.NewEncoder(w).Encode([]Range{testSplit.Left, testSplit.Right})
	case "/v1/operator/range/split":
		json.NewEncoder(w).Encode(testSplit)
	default:
		http.NotFound(w, r)
	}
}

func (n *rangeNode) sent() []*http.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*http.Request(nil), n.requests...)
}

func TestRangesAndSplit(t *testing.T) {
	node := &rangeNode{}
	srv := httptest.NewServer(node)
	defer srv.Close()
	c, err := New(Config{Endpoints: []string{srv.URL}, Token: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rs, err := c.Ranges(ctx)
	if err != nil || !reflect.DeepEqual(rs, []Range{testSplit.Left, testSplit.Right}) {
		t.Fatalf("ranges: %+v, %v", rs, err)
	}
	// The key travels escaped: it may hold anything a key holds.
	key := "a b/&c=d/"
	s, err := c.SplitRange(ctx, key)
	if err != nil || !reflect.DeepEqual(s, testSplit) {
		t.Fatalf("split: %+v, %v", s, err)
	}
	sent := node.sent()
	if len(sent) != 2 {
		t.Fatalf("%d requests, want 2", len(sent))
	}
	get, split := sent[0], sent[1]
	if get.Method != "GET" || split.Method != "POST" || split.URL.Query().Get("key") != key || split.Header.Get("X-Consul-Token") != "secret" {
		t.Fatalf("sent %s %s and %s %s (token %q)", get.Method, get.URL, split.Method, split.URL, split.Header.Get("X-Consul-Token"))
	}
	// Not keyed: the operator endpoints take no Idempotency-Key, and a
	// split is not resent as if it were.
	if k := split.Header.Get("Idempotency-Key"); k != "" {
		t.Fatalf("a split carries Idempotency-Key %q", k)
	}

	if _, err := c.SplitRange(ctx, ""); !errors.Is(err, kv.ErrInvalid) || len(node.sent()) != 2 {
		t.Fatalf("a split without a key: %v, sent", err)
	}
}

// A split is resent only when it certainly did nothing: on a node without
// a leader, or one that could not be reached, the next is asked; after an
// unknown outcome the call ends there, saying so.
func TestSplitRetriedOnlyWhenNotApplied(t *testing.T) {
	body, _ := json.Marshal(testSplit)
	noLeader := &script{statuses: []int{500}, bodies: []string{"no_leader: No cluster leader"}}
	a := httptest.NewServer(noLeader)
	defer a.Close()
	good := &script{statuses: []int{200}, bodies: []string{string(body)}}
	b := httptest.NewServer(good)
	defer b.Close()
	c := newTestClient(t, deadAddr(t), a.URL, b.URL)
	if s, err := c.SplitRange(context.Background(), "m/"); err != nil || !reflect.DeepEqual(s, testSplit) {
		t.Fatalf("split past a dead node and one without a leader: %+v, %v", s, err)
	}
	if len(noLeader.keys) != 1 || len(good.keys) != 1 {
		t.Fatalf("sends: %d to the node without a leader, %d to the good one", len(noLeader.keys), len(good.keys))
	}

	lost := &script{statuses: []int{500}, bodies: []string{"unknown_outcome: leadership lost while committing"}}
	a2 := httptest.NewServer(lost)
	defer a2.Close()
	spare := &script{statuses: []int{200}, bodies: []string{string(body)}}
	b2 := httptest.NewServer(spare)
	defer b2.Close()
	c = newTestClient(t, a2.URL, b2.URL)
	if _, err := c.SplitRange(context.Background(), "m/"); !errors.Is(err, kv.ErrUnknownOutcome) || len(lost.keys) != 1 || len(spare.keys) != 0 {
		t.Fatalf("split after an unknown outcome: %v, %d+%d sends", err, len(lost.keys), len(spare.keys))
	}
}

// The node's refusals come back as the store's sentinels, with its reason.
func TestSplitRefusals(t *testing.T) {
	for _, c := range []struct {
		status     int
		body, says string
		want       error
	}{
		{400, `invalid: invalid request: split key "m" must end with "/"`, `must end with "/"`, kv.ErrInvalid},
		{501, "not_implemented: not implemented: this node runs the keyspace as one range and cannot split it", "one range", kv.ErrNotImplemented},
		{403, "permission_denied: Permission denied: anonymous token lacks permission 'operator:write'", "operator:write", kv.ErrPermissionDenied},
	} {
		s := &script{statuses: []int{c.status}, bodies: []string{c.body}}
		srv := httptest.NewServer(s)
		_, err := newTestClient(t, srv.URL).SplitRange(context.Background(), "m/")
		srv.Close()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || len(s.keys) != 1 {
			t.Errorf("%d: %v after %d sends, want %v saying %q", c.status, err, len(s.keys), c.want, c.says)
		}
	}
	// A server that is not raftkv's (no such endpoint there) is not a
	// list of no ranges.
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	if rs, err := newTestClient(t, other.URL).Ranges(context.Background()); err == nil || !errors.Is(err, ErrPermanent) {
		t.Fatalf("ranges from another server: %+v, %v", rs, err)
	}
}
