package httpd

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/internal/ui"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// Stores are what the API serves, by concern. Each interface is declared
// next to the handlers that use it; raftstore.RaftStore implements them
// all (but Ranges, which is optional until ranges are built), the tests a
// real state machine (the keys and sessions) and small fakes (the rest).
type Stores struct {
	KV        KVStore       // keys and transactions (kv.go)
	Sessions  SessionStore  // sessions (session.go)
	Snapshots SnapshotStore // the whole state at once (snapshot.go)
	ACL       ACLStore      // tokens and policies (acl.go, authz.go)
	Cluster   ClusterStore  // the raft configuration and its health (cluster.go, agent.go)
	Node      Node          // the node answering (below)
	Ranges    RangeStore    // the keyspace's ranges (ranges.go); nil: one range
}

// Node is the node that answers: who it is and what it knows of the
// leader.
type Node interface {
	ID() string                   // its ID (its Consul node name)
	Addr() string                 // its advertised address
	Leader() (addr, id string)    // the leader it knows ("", "": none)
	LastContact() time.Duration   // since it last heard from the leader (0 on it)
	Ready() bool                  // whether it knows a leader and has caught up (/readyz)
	SessionTTLMin() time.Duration // the shortest session TTL accepted (Consul's session_ttl_min)
}

// check panics on a missing store: a wiring mistake, not a request's.
func (s Stores) check() {
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"KV", s.KV == nil}, {"Sessions", s.Sessions == nil}, {"Snapshots", s.Snapshots == nil},
		{"ACL", s.ACL == nil}, {"Cluster", s.Cluster == nil}, {"Node", s.Node == nil},
	} {
		if f.missing {
			panic("httpd.New: Stores." + f.name + " is nil")
		}
	}
}

// Options configure the handler.
type Options struct {
	MaxValueBytes int
	// Registry receives the HTTP metrics and is served on /metrics
	// (default: a fresh registry).
	Registry    *prometheus.Registry
	Logger      *slog.Logger
	EnablePprof bool
	// DisableUI stops serving the web UI at /ui/ (and / redirecting there).
	DisableUI bool
	// LeaderHold is how long a request that finds no leader waits for one
	// before it is answered "No cluster leader" (default
	// kv.DefaultLeaderHold, Consul's RPC hold timeout; negative: not at
	// all). Requests with wire.HeaderFailFast are answered as soon as the
	// node cannot expect a leader soon.
	LeaderHold time.Duration
}

type handler struct {
	kv        KVStore
	sessions  SessionStore
	snapshots SnapshotStore
	acl       ACLStore
	cluster   ClusterStore
	node      Node
	ranges    RangeStore // nil: one range, see rangeList and rangeSplit
	maxValue  int
	logger    *slog.Logger
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// New returns the API handler. It panics if a store is missing.
func New(stores Stores, opts Options) http.Handler {
	stores.check()
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = kv.DefaultMaxValueBytes
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LeaderHold == 0 {
		opts.LeaderHold = kv.DefaultLeaderHold
	}
	h := &handler{
		kv:        stores.KV,
		sessions:  stores.Sessions,
		snapshots: stores.Snapshots,
		acl:       stores.ACL,
		cluster:   stores.Cluster,
		node:      stores.Node,
		ranges:    stores.Ranges,
		maxValue:  opts.MaxValueBytes,
		logger:    opts.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"route", "method", "code"}),
	}
	opts.Registry.MustRegister(h.requests, h.latency)

	mux := http.NewServeMux()
	// route serves pattern for a client with a token; open serves it to
	// anyone (ACLs or not).
	route := func(pattern, name string, methods map[string]handlerFunc) {
		mux.Handle(pattern, h.instrument(name, h.authenticated(methodSwitch(methods))))
	}
	open := func(pattern, name string, methods map[string]handlerFunc) {
		mux.Handle(pattern, h.instrument(name, methodSwitch(methods)))
	}
	kvRoute := h.instrument("kv", h.authenticated(methodSwitch(map[string]handlerFunc{
		http.MethodGet: h.kvGet, http.MethodPut: h.kvPut, http.MethodDelete: h.kvDelete,
	})))
	route("/v1/txn", "txn", map[string]handlerFunc{http.MethodPut: h.txn})
	// A snapshot holds every token's secret: Consul asks for acl:write.
	route("/v1/snapshot", "snapshot", map[string]handlerFunc{
		http.MethodGet: need(aclWrite, h.snapshotSave), http.MethodPut: need(aclWrite, h.snapshotRestore),
	})
	route("/v1/session/create", "session_create", map[string]handlerFunc{http.MethodPut: h.sessionCreate})
	route("/v1/session/destroy/", "session_destroy", map[string]handlerFunc{http.MethodPut: h.sessionDestroy})
	route("/v1/session/renew/", "session_renew", map[string]handlerFunc{http.MethodPut: h.sessionRenew})
	route("/v1/session/info/", "session_info", map[string]handlerFunc{http.MethodGet: h.sessionInfo})
	route("/v1/session/node/", "session_node", map[string]handlerFunc{http.MethodGet: h.sessionNode})
	route("/v1/session/keys", "session_keys", map[string]handlerFunc{http.MethodGet: h.sessionKeys})
	route("/v1/session/list", "session_list", map[string]handlerFunc{http.MethodGet: h.sessionList})
	route("/v1/agent/self", "agent_self", map[string]handlerFunc{http.MethodGet: h.agentSelf})
	route("/v1/agent/members", "agent_members", map[string]handlerFunc{http.MethodGet: h.agentMembers})
	open("/v1/status/leader", "status_leader", map[string]handlerFunc{http.MethodGet: h.statusLeader})
	open("/v1/status/peers", "status_peers", map[string]handlerFunc{http.MethodGet: h.statusPeers})
	route("/v1/operator/raft/configuration", "raft_configuration", map[string]handlerFunc{http.MethodGet: need(operatorRead, h.raftConfiguration)})
	route("/v1/operator/raft/peer", "raft_peer", map[string]handlerFunc{
		http.MethodPut: need(operatorWrite, h.peerAdd), http.MethodDelete: need(operatorWrite, h.peerRemove),
	})
	route("/v1/operator/autopilot/health", "autopilot_health", map[string]handlerFunc{http.MethodGet: need(operatorRead, h.autopilotHealth)})
	route("/v1/operator/raft/transfer-leader", "raft_transfer_leader", map[string]handlerFunc{http.MethodPost: need(operatorWrite, h.transferLeader)})
	route("/v1/operator/ranges", "ranges", map[string]handlerFunc{http.MethodGet: need(operatorRead, h.rangeList)})
	route("/v1/operator/range/keep-whole", "range_keep_whole", map[string]handlerFunc{
		http.MethodPut: need(operatorWrite, h.rangeKeepWhole), http.MethodDelete: need(operatorWrite, h.rangeKeepWhole),
	})
	route("/v1/operator/range/split", "range_split", map[string]handlerFunc{
		http.MethodPost: need(operatorWrite, h.rangeSplit), http.MethodPut: need(operatorWrite, h.rangeSplit),
	})
	h.aclRoutes(mux)
	open("/healthz", "healthz", map[string]handlerFunc{http.MethodGet: h.healthz})
	open("/readyz", "readyz", map[string]handlerFunc{http.MethodGet: h.readyz})
	mux.Handle("/metrics", h.instrument("metrics", methodSwitch(map[string]handlerFunc{
		http.MethodGet: answers(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})),
	})))
	if opts.EnablePprof {
		// The command line may hold -acl-initial-management: with ACLs on,
		// profiles are for management tokens only.
		for path, fn := range map[string]http.HandlerFunc{
			"/debug/pprof/": pprof.Index, "/debug/pprof/cmdline": pprof.Cmdline, "/debug/pprof/profile": pprof.Profile,
			"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
		} {
			mux.Handle(path, h.authenticated(need(aclWrite, answers(fn))))
		}
	}
	if !opts.DisableUI {
		// The UI's files need no token: what the page shows comes from
		// API calls that carry the user's.
		mux.Handle(ui.Prefix, h.instrument("ui", ui.Handler()))
	}
	mux.Handle("/", h.instrument("unknown", handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/" && !opts.DisableUI && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			http.Redirect(w, r, ui.Prefix, http.StatusMovedPermanently) // as Consul does
			return nil
		}
		return fmt.Errorf("%w %s", kv.ErrNoSuchEndpoint, r.URL.Path)
	})))
	// Unclean paths ("/v1/kv//a", "/./") are redirected to the clean one
	// for GET and HEAD, as Consul does; other methods get 400 rather than a
	// redirect that clients would follow as a GET. Keys are routed before
	// the ServeMux, which has its own idea of paths.
	dispatch := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if !isClean(r.URL.Path) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				return fmt.Errorf("%w: unclean path %q", kv.ErrInvalid, r.URL.Path)
			}
			target := cleanPath(r.URL.Path)
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return nil
		}
		if r.URL.Path == "/v1/kv" || strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			kvRoute.ServeHTTP(w, r)
			return nil
		}
		mux.ServeHTTP(w, r)
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w = outcomeWriter{w}
		}
		if r.Header.Get(wire.HeaderFailFast) == "" && opts.LeaderHold > 0 {
			r = r.WithContext(kv.WithLeaderHold(r.Context(), opts.LeaderHold))
		}
		dispatch.ServeHTTP(w, r)
	})
}

// handlerFunc is an API handler: it writes its answer, or returns the
// error to answer with, having written nothing (headers it set, such as a
// read's X-Consul-Index, stay). Its ServeHTTP writes that error with
// writeError, through which every error answer of the API goes.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (fn handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := fn(w, r); err != nil {
		writeError(w, err)
	}
}

// answers adapts a handler that never fails (its own answers are not the
// API's errors: metrics, profiles).
func answers(next http.Handler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		next.ServeHTTP(w, r)
		return nil
	}
}

// cleanPath is path.Clean keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// isClean reports whether p is what cleanPath makes of it.
func isClean(p string) bool { return p != "" && cleanPath(p) == p }

// methodSwitch dispatches on the method; others get 405 with Allow.
func methodSwitch(methods map[string]handlerFunc) handlerFunc {
	allow := ""
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if _, ok := methods[m]; ok {
			if allow != "" {
				allow += ", "
			}
			allow += m
		}
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		if fn, ok := methods[r.Method]; ok {
			return fn(w, r)
		}
		if r.Method == http.MethodHead {
			if fn, ok := methods[http.MethodGet]; ok {
				return fn(w, r)
			}
		}
		return &methodNotAllowed{method: r.Method, path: r.URL.Path, allow: allow}
	}
}

// instrument records the request count and latency of a route and turns a
// handler panic into a 500 instead of a dropped connection.
func (h *handler) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				h.logger.Error("handler panic", "route", route, "panic", p)
				if !rec.wrote {
					writeError(rec, fmt.Errorf("internal error: %v", p))
				}
			}
			code := strconv.Itoa(rec.status)
			h.requests.WithLabelValues(route, r.Method, code).Inc()
			h.latency.WithLabelValues(route, r.Method, code).Observe(time.Since(start).Seconds())
			// No leader is the cluster's state, logged by raft, not a failure
			// of this request: an election must not flood the log.
			if rec.status >= 500 && rec.status != http.StatusServiceUnavailable && rec.Header().Get(wire.HeaderError) != kv.Code(kv.ErrNoLeader) {
				h.logger.Warn("request failed", "route", route, "method", r.Method, "status", rec.status)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
