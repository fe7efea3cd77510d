package client

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/api"
)

// A write whose answer names its range's leader sends the next writes of
// keys in that range straight to it; other keys, reads and prefix deletes
// go where they went; a route whose leader fails is dropped after one try.
func TestWritesGoToTheLeaderTheirRouteNames(t *testing.T) {
	a, b := &script{}, &script{}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	defer sa.Close()
	defer sb.Close()
	route := api.Route{Range: 1, Generation: 2, Start: "m/", Leader: hostOf(sb.URL)}
	a.route, b.route = route.Header(), route.Header()
	c := newTestClient(t, sa.URL, sb.URL)
	ctx := context.Background()
	seen := func() string {
		a.mu.Lock()
		b.mu.Lock()
		defer a.mu.Unlock()
		defer b.mu.Unlock()
		return fmt.Sprintf("a=%s b=%s", strings.Join(a.paths, ","), strings.Join(b.paths, ","))
	}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Put(ctx, "m/1", []byte("v"))) // to the preferred endpoint, which names the route
	must(c.Put(ctx, "m/2", []byte("v"))) // routed
	must(c.Delete(ctx, "m/3"))           // routed
	must(c.Put(ctx, "a", []byte("v")))   // outside the route: preferred endpoint
	must(c.Delete(ctx, "m/", Recurse())) // a prefix: not routed
	a.mu.Lock()
	a.statuses, a.bodies = []int{200}, []string{`[{"Key":"m/1","Value":"dg==","CreateIndex":1,"ModifyIndex":1}]`}
	a.mu.Unlock()
	if _, _, err := c.Get(ctx, "m/1"); err != nil {
		t.Fatal(err)
	}
	want := "a=PUT /v1/kv/m/1,PUT /v1/kv/a,DELETE /v1/kv/m/,GET /v1/kv/m/1 b=PUT /v1/kv/m/2,DELETE /v1/kv/m/3"
	if got := seen(); got != want {
		t.Fatalf("requests:\n got %s\nwant %s", got, want)
	}

	// The leader goes away (a node shutting down answers 503): tried once,
	// then dropped.
	a.mu.Lock()
	a.route = ""
	a.mu.Unlock()
	b.mu.Lock()
	b.statuses, b.bodies, b.paths = []int{503}, []string{"closed: node closed"}, nil
	b.mu.Unlock()
	a.mu.Lock()
	a.paths = nil
	a.mu.Unlock()
	must(c.Put(ctx, "m/4", []byte("v")))
	must(c.Put(ctx, "m/5", []byte("v")))
	if got, want := seen(), "a=PUT /v1/kv/m/4,PUT /v1/kv/m/5 b=PUT /v1/kv/m/4"; got != want {
		t.Fatalf("after the leader left:\n got %s\nwant %s", got, want)
	}
}

// The cache keeps one route per span: a newer route over an old span
// replaces every route it overlaps, and an older generation of the same
// range does not replace a newer one.
func TestRouteCache(t *testing.T) {
	var rc routeCache
	rc.learn(api.Route{Range: 0, Generation: 1, End: "m/", Leader: "n1:1"})
	rc.learn(api.Route{Range: 1, Generation: 1, Start: "m/", Leader: "n2:1"})
	for key, want := range map[string]string{"": "n1:1", "a": "n1:1", "m/": "n2:1", "z": "n2:1"} {
		if r, ok := rc.lookup(key); !ok || r.Leader != want {
			t.Errorf("%q: %+v %v, want %s", key, r, ok, want)
		}
	}
	// Range 1 split at t/: its left half, at generation 2, replaces it.
	rc.learn(api.Route{Range: 1, Generation: 2, Start: "m/", End: "t/", Leader: "n3:1"})
	if _, ok := rc.lookup("z"); ok {
		t.Error("a key of the old span past the split kept its route")
	}
	if r, _ := rc.lookup("n"); r.Leader != "n3:1" {
		t.Errorf("n: %+v", r)
	}
	rc.learn(api.Route{Range: 1, Generation: 1, Start: "m/", Leader: "n2:1"}) // a lagging node's answer
	if r, _ := rc.lookup("n"); r.Generation != 2 {
		t.Errorf("an older generation replaced a newer one: %+v", r)
	}
	rc.forget("n")
	if _, ok := rc.lookup("n"); ok {
		t.Error("a forgotten route is still there")
	}
	if r, ok := rc.lookup("a"); !ok || r.Range != 0 {
		t.Errorf("forgetting one route dropped another: %+v %v", r, ok)
	}
}

// Writes from many goroutines learn and look up routes at once (run under
// -race).
func TestRouteCacheConcurrently(t *testing.T) {
	var rc routeCache
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				start := fmt.Sprintf("%c/", 'a'+(g+i)%20)
				rc.learn(api.Route{Range: uint64(g), Generation: uint64(i), Start: start, End: start + "~", Leader: "n:1"})
				if r, ok := rc.lookup(start + "x"); ok && !r.Contains(start+"x") {
					t.Errorf("%q found %+v", start+"x", r)
				}
				if i%7 == 0 {
					rc.forget(start)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
