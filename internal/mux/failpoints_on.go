//go:build failpoints

package mux

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// faults blocks this node's traffic to chosen peers: new dials fail and
// open connections are closed. Configured on both sides, it partitions two
// nodes completely (each direction of raft and forwarding uses the
// dialer's own connections). Clients are not affected.
type faults struct {
	mu      sync.Mutex
	blocked map[string]bool
	conns   map[string]map[*trackedConn]struct{}
}

func (f *faults) allow(addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocked[addr] {
		return fmt.Errorf("failpoint: traffic to %s is blocked", addr)
	}
	return nil
}

func (f *faults) track(addr string, c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, f: f, addr: addr}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		f.conns = map[string]map[*trackedConn]struct{}{}
	}
	if f.conns[addr] == nil {
		f.conns[addr] = map[*trackedConn]struct{}{}
	}
	f.conns[addr][t] = struct{}{}
	return t
}

// setBlocked replaces the blocked set and closes connections to peers that
// are blocked now.
func (f *faults) setBlocked(addrs []string) {
	f.mu.Lock()
	f.blocked = map[string]bool{}
	var victims []*trackedConn
	for _, a := range addrs {
		f.blocked[a] = true
		for c := range f.conns[a] {
			victims = append(victims, c)
		}
	}
	f.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

func (f *faults) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for a := range f.blocked {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

type trackedConn struct {
	net.Conn
	f    *faults
	addr string
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.f.mu.Lock()
		delete(t.f.conns[t.addr], t)
		t.f.mu.Unlock()
	})
	return t.Conn.Close()
}

// FailpointHandler serves /debug/failpoints/blocked: GET lists the peers
// this node cannot reach, PUT replaces them (a comma-separated list of
// addresses; empty heals).
func (m *Mux) FailpointHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/failpoints/blocked" {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var addrs []string
			for _, a := range strings.Split(string(body), ",") {
				if a = strings.TrimSpace(a); a != "" {
					addrs = append(addrs, a)
				}
			}
			m.faults.setBlocked(addrs)
		default:
			http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
			return
		}
		io.WriteString(w, strings.Join(m.faults.list(), ",")+"\n")
	})
}
