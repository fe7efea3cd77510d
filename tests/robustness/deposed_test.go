package robustness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// TestDeposedLeaderRefusesReads cuts the leader off while its lease has
// seconds to run, lets the others elect a successor and overwrite a key, and
// reads the key from the cut-off node. It still believes it leads (raft only
// steps down when the lease runs out), so only the read path's leadership
// round stands between the client and the old value.
func TestDeposedLeaderRefusesReads(t *testing.T) {
	fast := []string{"-heartbeat-timeout", "300ms", "-election-timeout", "300ms"}
	slow := []string{"-heartbeat-timeout", "10s", "-election-timeout", "10s"} // lease 5 s
	c := proccluster.Start(t, 3, proccluster.Options{
		Root:     "../..",
		Build:    proccluster.BuildOptions{Tags: "failpoints"},
		NodeArgs: [][]string{fast, slow, fast},
		Isolated: isolated(t),
	})
	e := &env{t: t, c: c, serving: newServingLog(time.Now(), 3)}
	const deposed = 1
	testsupport.WaitFor(t, 30*time.Second, "n2 to lead", func() error {
		l := c.Leader()
		if l == deposed {
			return nil
		}
		if l >= 0 {
			call(t, http.MethodPost, c.Procs[l].Addr, "/v1/operator/raft/transfer-leader?id="+c.Procs[deposed].ID, "")
		}
		return fmt.Errorf("leader is node %d", l)
	})
	if code, _ := call(t, http.MethodPut, c.Procs[deposed].Addr, "/v1/kv/k", "old"); code != 200 {
		t.Fatalf("first write: %d", code)
	}

	e.partition([2]int{deposed, 0}, [2]int{deposed, 2})
	successor := -1
	testsupport.WaitFor(t, 10*time.Second, "a successor", func() error {
		for _, i := range []int{0, 2} {
			if _, body := call(t, http.MethodGet, c.Procs[i].Addr, "/v1/status/leader", ""); strings.Contains(body, c.Procs[i].Addr) {
				successor = i
				return nil
			}
		}
		return fmt.Errorf("no successor yet")
	})
	if code, _ := call(t, http.MethodPut, c.Procs[successor].Addr, "/v1/kv/k", "new"); code != 200 {
		t.Fatalf("write on the successor: %d", code)
	}

	if _, body := call(t, http.MethodGet, c.Procs[deposed].Addr, "/v1/status/leader", ""); !strings.Contains(body, c.Procs[deposed].Addr) {
		t.Fatalf("the cut-off node no longer believes it leads (%s): the test proves nothing; lengthen its lease", body)
	}
	code, body := call(t, http.MethodGet, c.Procs[deposed].Addr, "/v1/kv/k?raw", "")
	if code == 200 {
		t.Fatalf("the deposed leader answered a linearizable read with %q after %q was written", body, "new")
	}
	t.Logf("deposed leader refused the read: %d %s", code, strings.TrimSpace(body))
}

// call makes one request with a short deadline; code 0 means no answer.
func call(t *testing.T, method, addr, path, body string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
