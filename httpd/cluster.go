package httpd

import (
	"fmt"
	"io"
	"net/http"

	"github.com/raftkv/raftkv/kv"
)

func (h *handler) statusLeader(w http.ResponseWriter, r *http.Request) {
	addr, _ := h.store.Leader()
	writeJSON(w, http.StatusOK, addr)
}

func (h *handler) statusPeers(w http.ResponseWriter, r *http.Request) {
	c, err := h.store.Configuration(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	peers := []string{}
	for _, s := range c.Servers {
		if s.Voter {
			peers = append(peers, s.Address)
		}
	}
	writeJSON(w, http.StatusOK, peers)
}

type raftServer struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

func (h *handler) raftConfiguration(w http.ResponseWriter, r *http.Request) {
	c, err := h.store.Configuration(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := struct {
		Servers []raftServer
		Index   uint64
	}{Servers: []raftServer{}, Index: c.Index}
	for _, s := range c.Servers {
		out.Servers = append(out.Servers, raftServer{ID: s.ID, Node: s.ID, Address: s.Address, Leader: s.Leader, ProtocolVersion: "3", Voter: s.Voter})
	}
	writeJSON(w, http.StatusOK, out)
}

// autopilotHealth answers Consul's health report: 200 when the cluster is
// healthy, 429 (as Consul does) when it is not.
func (h *handler) autopilotHealth(w http.ResponseWriter, r *http.Request) {
	health, err := h.store.AutopilotHealth(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if health.Servers == nil {
		health.Servers = []kv.ServerHealth{}
	}
	status := http.StatusOK
	if !health.Healthy {
		status = http.StatusTooManyRequests
	}
	writeJSON(w, status, health)
}

func (h *handler) peerAdd(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, addr := q.Get("id"), q.Get("address")
	if id == "" || addr == "" {
		writeError(w, fmt.Errorf("%w: need id and address query parameters", kv.ErrInvalid))
		return
	}
	join := h.store.Join
	switch q.Get("voter") {
	case "", "true":
	case "false":
		join = h.store.JoinReadReplica // a read replica: never promoted
	default:
		writeError(w, fmt.Errorf("%w: voter must be true or false, not %q", kv.ErrInvalid, q.Get("voter")))
		return
	}
	if err := join(r.Context(), id, addr); err != nil {
		writeError(w, err)
		return
	}
	io.WriteString(w, "true\n")
}

func (h *handler) peerRemove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" && q.Get("address") != "" {
		c, err := h.store.Configuration(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		for _, s := range c.Servers {
			if s.Address == q.Get("address") {
				id = s.ID
			}
		}
		if id == "" {
			writeError(w, fmt.Errorf("%w: no server at address %q", kv.ErrUnknownPeer, q.Get("address")))
			return
		}
	}
	if id == "" {
		writeError(w, fmt.Errorf("%w: need an id (or address) query parameter", kv.ErrInvalid))
		return
	}
	if err := h.store.Remove(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	io.WriteString(w, "true\n")
}

func (h *handler) transferLeader(w http.ResponseWriter, r *http.Request) {
	if err := h.store.TransferLeadership(r.Context(), r.URL.Query().Get("id")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"Success": true})
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "ok\n")
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if !h.store.Ready() {
		// A probe's answer, not a request held for a leader: 503, as
		// load balancers and orchestrators expect of a node not ready.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "not ready: no leader known, or not caught up", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}
