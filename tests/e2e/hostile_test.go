package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawRequest writes bytes to a node and returns the status line's code.
func rawRequest(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.60q: %v", req, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stateHash hashes a linearizable listing of every key.
func stateHash(t *testing.T, addr string) [32]byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/kv/?recurse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sha256.Sum256(b)
}

func TestHostileInput(t *testing.T) {
	c := startCluster(t, 3)
	addr := c.Procs[1].Addr
	base := "http://" + addr

	// A value exactly at the limit is accepted, one byte over is not.
	const limit = 512 << 10
	if r := put(t, base+"/v1/kv/big", strings.Repeat("v", limit), nil); r.StatusCode != 200 {
		t.Fatalf("value at the limit: %d", r.StatusCode)
	}
	if r := put(t, base+"/v1/kv/big", strings.Repeat("v", limit+1), nil); r.StatusCode != 413 {
		t.Fatalf("value one byte over the limit: %d", r.StatusCode)
	}
	before := stateHash(t, addr)

	// Honest clients keep being served throughout.
	stop := make(chan struct{})
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := hc.Get(fmt.Sprintf("http://%s/v1/kv/honest-%d?stale", c.Procs[i%3].Addr, n))
				if err != nil || (resp.StatusCode != 404 && resp.StatusCode != 200) {
					failed.Add(1)
				} else {
					served.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}

	// Slowloris: connections that send nothing, and ones that stop half way.
	var idle []net.Conn
	for i := range 200 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			io.WriteString(conn, "GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		}
		idle = append(idle, conn)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()

	long := strings.Repeat("k", 1025)
	ops129 := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"set","Key":"x"}},`, 129), ",") + "]"
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"put without key", "PUT", "/v1/kv/", "v", 400},
		{"delete without key", "DELETE", "/v1/kv/", "", 400},
		{"key over 1024 bytes", "PUT", "/v1/kv/" + long, "v", 400},
		{"bad cas", "PUT", "/v1/kv/x?cas=abc", "v", 400},
		{"bad flags", "PUT", "/v1/kv/x?flags=-1", "v", 400},
		{"bad index", "GET", "/v1/kv/x?index=1e9", "", 400},
		{"bad wait", "GET", "/v1/kv/x?index=1&wait=soon", "", 400},
		{"unknown verb", "PUT", "/v1/txn", `[{"KV":{"Verb":"nuke","Key":"x"}}]`, 400},
		{"malformed txn", "PUT", "/v1/txn", `{"KV":`, 400},
		{"txn of 129 ops", "PUT", "/v1/txn", ops129, 413},
		{"non-UTF-8 key, escaped", "PUT", "/v1/kv/%ff%fe", "v", 400},
		{"wrong method", "PATCH", "/v1/kv/x", "v", 405},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || (tc.want != 405 && bytes.Count(msg, []byte("\n")) != 1) {
			t.Fatalf("%s: %d %q, want %d with a one-line reason", tc.name, resp.StatusCode, msg, tc.want)
		}
	}
	// What Go clients cannot even send: raw bytes on the wire.
	raw := []struct {
		name, req string
		want      int
	}{
		{"invalid percent-encoding", "GET /v1/kv/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"raw non-UTF-8 key", "PUT /v1/kv/\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv", 400},
		{"1 MB header", "GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 1<<20) + "\r\n\r\n", 431},
	}
	for _, tc := range raw {
		if got := rawRequest(t, addr, tc.req); got != tc.want {
			t.Fatalf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}

	time.Sleep(500 * time.Millisecond) // let the honest clients run alongside the idle connections
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || served.Load() == 0 {
		t.Fatalf("honest clients: %d served, %d failed while under hostile input", served.Load(), failed.Load())
	}
	if after := stateHash(t, addr); after != before {
		t.Fatal("hostile input changed the state")
	}
	// And the node still takes writes.
	if r := put(t, base+"/v1/kv/after", "ok", nil); r.StatusCode != 200 {
		t.Fatalf("write after hostile input: %d", r.StatusCode)
	}
}
