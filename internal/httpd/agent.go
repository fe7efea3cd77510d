package httpd

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/internal/version"
	"github.com/raftkv/raftkv/kv"
)

// nodeNamespace derives a stable Consul-style node UUID from a node ID.
var nodeNamespace = uuid.MustParse("3a1c1d4e-6f3b-4c8e-9a57-2d6c0b7e9f10")

// nodeUUID is the Consul node ID of the raftkv node id.
func nodeUUID(id string) string { return uuid.NewSHA1(nodeNamespace, []byte(id)).String() }

// agentSelf answers GET /v1/agent/self with what Consul's tools read:
// consul lock and consul/api's NodeName, Vault's Member.Addr, Patroni's
// SessionTTLMin. Every top-level value is an object (or null), which
// consul/api's Agent().Self() requires.
func (h *handler) agentSelf(w http.ResponseWriter, r *http.Request) error {
	id := h.node.ID()
	writeJSON(w, http.StatusOK, map[string]any{
		"Config": map[string]any{
			"NodeName":          id,
			"NodeID":            nodeUUID(id),
			"Datacenter":        "dc1",
			"PrimaryDatacenter": "dc1",
			"Server":            true,
			"Version":           version.String(),
			"Revision":          "",
			"SessionTTLMin":     h.node.SessionTTLMin().Nanoseconds(),
		},
		"DebugConfig": map[string]any{},
		"Coord":       nil,
		"Member":      h.member(r, id, h.node.Addr(), memberAlive), // it is answering
		"Stats":       map[string]any{},
		"Meta":        map[string]string{},
	})
	return nil
}

// Serf's member statuses, which consul/api's AgentMember.Status holds.
const (
	memberUnknown = 0
	memberAlive   = 1
	memberLeft    = 3
	memberFailed  = 4
)

// agentMember is Consul's AgentMember: a server of the cluster as a Consul
// agent lists it (GET /v1/agent/members, and /v1/agent/self's Member).
type agentMember struct {
	Name        string
	Addr        string
	Port        int
	Tags        map[string]string
	Status      int
	ProtocolMin uint8
	ProtocolMax uint8
	ProtocolCur uint8
	DelegateMin uint8
	DelegateMax uint8
	DelegateCur uint8
}

// member describes the server id at addr (host:port, its advertise
// address) as a Consul server describes itself: Port is its one port (in
// Consul the gossip port, the "port" tag its RPC port: raftkv has one for
// everything), the tags those of a Consul server in dc1 that cost nothing
// to tell (its role, node ID, protocol versions, build, and whether ACLs
// and TLS are on), and the gossip protocol versions Consul's members
// report.
func (h *handler) member(r *http.Request, id, addr string, status int) agentMember {
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	tags := map[string]string{
		"role": "consul", "dc": "dc1", "segment": "", "id": nodeUUID(id),
		"vsn": "2", "vsn_min": "2", "vsn_max": "3", "raft_vsn": "3",
		"build": version.String(), "port": portStr, "acls": "0",
	}
	if h.acl.ACLsEnabled() {
		tags["acls"] = "1"
	}
	if r.TLS != nil { // every node speaks TLS if this one does
		tags["use_tls"] = "1"
	}
	return agentMember{Name: id, Addr: host, Port: port, Tags: tags, Status: status,
		ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2, DelegateMin: 2, DelegateMax: 5, DelegateCur: 4}
}

// agentMembers answers GET /v1/agent/members: one member per server of
// the raft configuration as this node has it, so that the list needs no
// leader. ?wan lists the same servers under their WAN names (<id>.dc1), as
// Consul's WAN pool holds a datacenter's servers; ?segment is ignored
// (raftkv has one).
func (h *handler) agentMembers(w http.ResponseWriter, r *http.Request) error {
	c, err := h.cluster.Configuration(r.Context())
	if err != nil {
		return err
	}
	status := h.memberStatuses(r.Context())
	_, wan := r.URL.Query()["wan"]
	out := make([]agentMember, 0, len(c.Servers))
	for _, s := range c.Servers {
		m := h.member(r, s.ID, s.Address, status(s))
		if wan {
			m.Name += ".dc1"
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// leaderViewTimeout bounds how long a follower asks the leader for the
// members' statuses before answering with what it knows itself.
const leaderViewTimeout = 2 * time.Second

// memberStatuses decides whether each server is alive or failed.
//
// A Consul agent answers from its gossip pool, in which every agent
// probes the others. raftkv has no gossip; the node that hears from every
// server is the leader (each acknowledges its heartbeats), and the leader
// already decides, for autopilot's report and for the node checks of
// sessions alike, that a server it has not heard from for
// kv.NodeFailAfter has failed. So the statuses are the leader's: its own
// autopilot report on the leader, and asked of the leader by a follower
// (one request, bounded by leaderViewTimeout), so that every node lists
// the same statuses. A follower alone knows only whether it hears from the
// leader: without a leader, or without its answer, this node vouches for
// itself and for the leader it heard from within kv.NodeFailAfter, and
// shows every other server failed, as a Consul agent cut off from them
// would.
func (h *handler) memberStatuses(ctx context.Context) func(kv.Server) int {
	leaderAddr, leaderID := h.node.Leader()
	local := func(s kv.Server) int {
		switch {
		case s.ID == h.node.ID():
			return memberAlive
		case s.ID == leaderID && leaderAddr != "" && h.node.LastContact() < kv.NodeFailAfter:
			return memberAlive
		}
		return memberFailed
	}
	if leaderAddr == "" {
		return local
	}
	ctx, cancel := context.WithTimeout(ctx, leaderViewTimeout)
	defer cancel()
	health, err := h.cluster.AutopilotHealth(ctx)
	if err != nil {
		return local
	}
	view := map[string]int{}
	for _, s := range health.Servers {
		switch s.SerfStatus {
		case "alive":
			view[s.ID] = memberAlive
		case "failed":
			view[s.ID] = memberFailed
		case "left":
			view[s.ID] = memberLeft
		default:
			view[s.ID] = memberUnknown
		}
	}
	return func(s kv.Server) int {
		if st, ok := view[s.ID]; ok {
			return st
		}
		return local(s) // joined since the leader's last report
	}
}
