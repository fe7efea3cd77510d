package robustness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	rkclient "github.com/raftkv/raftkv/client"

	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// With ACLs on, the traffic and lock clients carry a token that is not a
// management token (its policy grants write on keys and sessions, so the
// rule engine answers every request), and an intruder whose token may
// only read keeps trying to write through every node during the fault.
// None of its writes may be accepted; that none landed is checked twice:
// here (no 200) and by the linearizability check (a value no recorded
// client sent would break it).

// aclClients creates the traffic and intruder tokens (with the cluster's
// management token) and returns HTTP clients that carry them.
func aclClients(t *testing.T, c *proccluster.Cluster) (traffic, intruder *http.Client) {
	t.Helper()
	mgmt := c.HTTPClient(10 * time.Second)
	addr := c.Procs[0].Addr
	put := func(path string, body any, out any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPut, c.URL(addr, path), bytes.NewReader(b))
		resp, err := mgmt.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	var p struct{ ID string }
	var tok struct{ SecretID string }
	put("/v1/acl/policy", map[string]string{"Name": "traffic", "Rules": "key_prefix \"\" { policy = \"write\" }\nsession_prefix \"\" { policy = \"write\" }"}, &p)
	put("/v1/acl/token", map[string]any{"Policies": []map[string]string{{"ID": p.ID}}}, &tok)
	trafficSecret := tok.SecretID
	put("/v1/acl/policy", map[string]string{"Name": "reader", "Rules": "key_prefix \"\" { policy = \"read\" }"}, &p)
	put("/v1/acl/token", map[string]any{"Policies": []map[string]string{{"ID": p.ID}}}, &tok)
	base := c.HTTPClient(0).Transport
	return &http.Client{Transport: rkclient.TokenTransport{Token: trafficSecret, Next: base}},
		&http.Client{Transport: rkclient.TokenTransport{Token: tok.SecretID, Next: base}}
}

// intrude tries writes the intruder's token may not make, through every
// node in turn, until ctx ends; any that is accepted is an error. It
// returns how many were refused with 403.
func intrude(ctx context.Context, nodes []*node, errs chan<- error) int64 {
	var refused atomic.Int64
	rnd := rand.New(rand.NewPCG(9, uint64(time.Now().UnixNano())))
	for i := 0; ctx.Err() == nil; i++ {
		n := nodes[i%len(nodes)]
		value := []byte(fmt.Sprintf("intruder-%d", i))
		var method, path string
		var body []byte
		switch rnd.IntN(5) {
		case 0, 1:
			method, path, body = http.MethodPut, fmt.Sprintf("/v1/kv/r%d/k%d", rnd.IntN(100), rnd.IntN(3)), value
		case 2:
			method, path = http.MethodDelete, "/v1/kv/r?recurse"
		case 3:
			method, path = http.MethodPut, "/v1/txn"
			body = []byte(fmt.Sprintf(`[{"KV":{"Verb":"set","Key":"r%d/k0","Value":"aW50cnVkZXI="}}]`, rnd.IntN(100)))
		default:
			method, path, body = http.MethodPut, "/v1/session/create", []byte(`{"TTL":"10s"}`)
		}
		_, status, hdr, b := n.callOnce(ctx, method, path, body)
		switch status {
		case http.StatusForbidden:
			refused.Add(1)
		case http.StatusOK:
			select {
			case errs <- fmt.Errorf("the intruder's %s %s was accepted by n%d: %s", method, path, n.idx+1, b):
			default:
			}
		}
		if status == 0 || refusal(status, hdr) {
			time.Sleep(25 * time.Millisecond) // a client's pause before retrying, not synchronisation
		}
	}
	return refused.Load()
}
