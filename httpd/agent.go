package httpd

import (
	"net"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/raftkv/raftkv/internal/version"
	"github.com/raftkv/raftkv/kv"
)

// nodeNamespace derives a stable Consul-style node UUID from a node ID.
var nodeNamespace = uuid.MustParse("3a1c1d4e-6f3b-4c8e-9a57-2d6c0b7e9f10")

// agentSelf answers GET /v1/agent/self with what Consul's tools read:
// consul lock and consul/api's NodeName, Vault's Member.Addr, Patroni's
// SessionTTLMin. Every top-level value is an object (or null), which
// consul/api's Agent().Self() requires.
func (h *handler) agentSelf(w http.ResponseWriter, r *http.Request) {
	host, portStr, _ := net.SplitHostPort(h.store.Addr())
	port, _ := strconv.Atoi(portStr)
	id := h.store.ID()
	writeJSON(w, http.StatusOK, map[string]any{
		"Config": map[string]any{
			"NodeName":          id,
			"NodeID":            uuid.NewSHA1(nodeNamespace, []byte(id)).String(),
			"Datacenter":        "dc1",
			"PrimaryDatacenter": "dc1",
			"Server":            true,
			"Version":           version.String(),
			"Revision":          "",
			"SessionTTLMin":     kv.SessionTTLMin.Nanoseconds(),
		},
		"DebugConfig": map[string]any{},
		"Coord":       nil,
		"Member": map[string]any{
			"Name":   id,
			"Addr":   host,
			"Port":   port,
			"Tags":   map[string]string{"role": "raftkv"},
			"Status": 1,
		},
		"Stats": map[string]any{},
		"Meta":  map[string]string{},
	})
}
