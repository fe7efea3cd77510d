package httpd

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/raftkv/raftkv/kv"
)

// ClusterStore is the cluster's raft configuration and its health
// (/v1/status, /v1/operator, /v1/agent/members).
type ClusterStore interface {
	// Configuration is the raft configuration as this node has it.
	Configuration(ctx context.Context) (kv.Configuration, error)
	// AutopilotHealth is the leader's view of every server's health.
	AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error)
	// Join adds a voter (promoted once healthy); JoinReadReplica a server
	// that stays a non-voter.
	Join(ctx context.Context, id, addr string) error
	JoinReadReplica(ctx context.Context, id, addr string) error
	// Remove removes a server (kv.ErrUnknownPeer if it is not one).
	Remove(ctx context.Context, id string) error
	// TransferLeadership hands leadership to id, or to any voter if "".
	TransferLeadership(ctx context.Context, id string) error
}

func (h *handler) statusLeader(w http.ResponseWriter, r *http.Request) error {
	addr, _ := h.node.Leader()
	writeJSON(w, http.StatusOK, addr)
	return nil
}

func (h *handler) statusPeers(w http.ResponseWriter, r *http.Request) error {
	c, err := h.cluster.Configuration(r.Context())
	if err != nil {
		return err
	}
	peers := []string{}
	for _, s := range c.Servers {
		if s.Voter {
			peers = append(peers, s.Address)
		}
	}
	writeJSON(w, http.StatusOK, peers)
	return nil
}

type raftServer struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

func (h *handler) raftConfiguration(w http.ResponseWriter, r *http.Request) error {
	c, err := h.cluster.Configuration(r.Context())
	if err != nil {
		return err
	}
	out := struct {
		Servers []raftServer
		Index   uint64
	}{Servers: []raftServer{}, Index: c.Index}
	for _, s := range c.Servers {
		out.Servers = append(out.Servers, raftServer{ID: s.ID, Node: s.ID, Address: s.Address, Leader: s.Leader, ProtocolVersion: "3", Voter: s.Voter})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// autopilotHealth answers Consul's health report: 200 when the cluster is
// healthy, 429 (as Consul does) when it is not. The 429 is the report, not
// an error: it carries the report's body.
func (h *handler) autopilotHealth(w http.ResponseWriter, r *http.Request) error {
	health, err := h.cluster.AutopilotHealth(r.Context())
	if err != nil {
		return err
	}
	if health.Servers == nil {
		health.Servers = []kv.ServerHealth{}
	}
	status := http.StatusOK
	if !health.Healthy {
		status = http.StatusTooManyRequests
	}
	writeJSON(w, status, health)
	return nil
}

func (h *handler) peerAdd(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id, addr := q.Get("id"), q.Get("address")
	if id == "" || addr == "" {
		return fmt.Errorf("%w: need id and address query parameters", kv.ErrInvalid)
	}
	join := h.cluster.Join
	switch q.Get("voter") {
	case "", "true":
	case "false":
		join = h.cluster.JoinReadReplica // a read replica: never promoted
	default:
		return fmt.Errorf("%w: voter must be true or false, not %q", kv.ErrInvalid, q.Get("voter"))
	}
	if err := join(r.Context(), id, addr); err != nil {
		return err
	}
	io.WriteString(w, "true\n")
	return nil
}

func (h *handler) peerRemove(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("id")
	if id == "" && q.Get("address") != "" {
		c, err := h.cluster.Configuration(r.Context())
		if err != nil {
			return err
		}
		for _, s := range c.Servers {
			if s.Address == q.Get("address") {
				id = s.ID
			}
		}
		if id == "" {
			return fmt.Errorf("%w: no server at address %q", kv.ErrUnknownPeer, q.Get("address"))
		}
	}
	if id == "" {
		return fmt.Errorf("%w: need an id (or address) query parameter", kv.ErrInvalid)
	}
	if err := h.cluster.Remove(r.Context(), id); err != nil {
		return err
	}
	io.WriteString(w, "true\n")
	return nil
}

func (h *handler) transferLeader(w http.ResponseWriter, r *http.Request) error {
	if err := h.cluster.TransferLeadership(r.Context(), r.URL.Query().Get("id")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]bool{"Success": true})
	return nil
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) error {
	io.WriteString(w, "ok\n")
	return nil
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) error {
	if !h.node.Ready() {
		// A probe's answer, not a request held for a leader nor an error
		// of the API: 503, as load balancers and orchestrators expect of
		// a node not ready.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "not ready: no leader known, or not caught up", http.StatusServiceUnavailable)
		return nil
	}
	io.WriteString(w, "ready\n")
	return nil
}
