package httpd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/ui"
)

// Store is what the HTTP API needs from a node.
type Store interface {
	Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error)
	Apply(ctx context.Context, cmd *kv.Command) (*kv.Result, error)
	ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (*kv.Result, error)
	OpenSnapshot(ctx context.Context, stale bool) (*kv.Snapshot, error)
	RestoreSnapshot(ctx context.Context, r io.Reader) error
	Leader() (addr, id string)
	Configuration(ctx context.Context) (kv.Configuration, error)
	AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error)
	Join(ctx context.Context, id, addr string) error
	JoinReadReplica(ctx context.Context, id, addr string) error
	Remove(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	Ready() bool

	// ACLs (see authz.go); ResolveToken, ApplyACL and ACLState fail with
	// kv.ErrACLDisabled when ACLs are off.
	ACLsEnabled() bool
	ResolveToken(secret string) (*acl.Identity, error)
	ApplyACL(ctx context.Context, c *acl.Command) (*kv.Result, error)
	ACLState(ctx context.Context, stale bool) (ACLReader, error)

	CreateSession(ctx context.Context, spec kv.Session) (string, error)
	DestroySession(ctx context.Context, id string) error
	RenewSession(ctx context.Context, id string) (kv.Session, error)
	Sessions(ctx context.Context, q kv.SessionQuery) (*kv.SessionResult, error)
	HeldKeys(ctx context.Context, stale bool) (map[string][]string, error)

	SessionTTLMin() time.Duration // the shortest session TTL accepted (Consul's session_ttl_min)
	LastContact() time.Duration   // since this node last heard from the leader (0 on it)
	ID() string                   // this node's ID (its Consul node name)
	Addr() string                 // this node's advertised address
}

// ACLReader reads the replicated policies and tokens (nil, nil: none).
type ACLReader interface {
	ACLIndex() uint64
	ACLBootstrapIndex() (uint64, error)
	ACLPolicy(id string) (*acl.Policy, error)
	ACLPolicyByName(name string) (*acl.Policy, error)
	ACLPolicies() ([]acl.Policy, error)
	ACLToken(accessor string) (*acl.Token, error)
	ACLTokenBySecret(secret string) (*acl.Token, error)
	ACLTokens() ([]acl.Token, error)
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
	store    Store
	maxValue int
	logger   *slog.Logger
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns the API handler.
func New(store Store, opts Options) http.Handler {
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
		store:    store,
		maxValue: opts.MaxValueBytes,
		logger:   opts.Logger,
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
	route := func(pattern, name string, methods map[string]http.HandlerFunc) {
		mux.Handle(pattern, h.instrument(name, h.authenticated(methodSwitch(methods))))
	}
	open := func(pattern, name string, methods map[string]http.HandlerFunc) {
		mux.Handle(pattern, h.instrument(name, methodSwitch(methods)))
	}
	kvRoute := h.instrument("kv", h.authenticated(methodSwitch(map[string]http.HandlerFunc{
		http.MethodGet: h.kvGet, http.MethodPut: h.kvPut, http.MethodDelete: h.kvDelete,
	})))
	route("/v1/txn", "txn", map[string]http.HandlerFunc{http.MethodPut: h.txn})
	// A snapshot holds every token's secret: Consul asks for acl:write.
	route("/v1/snapshot", "snapshot", map[string]http.HandlerFunc{
		http.MethodGet: need(aclWrite, h.snapshotSave), http.MethodPut: need(aclWrite, h.snapshotRestore),
	})
	route("/v1/session/create", "session_create", map[string]http.HandlerFunc{http.MethodPut: h.sessionCreate})
	route("/v1/session/destroy/", "session_destroy", map[string]http.HandlerFunc{http.MethodPut: h.sessionDestroy})
	route("/v1/session/renew/", "session_renew", map[string]http.HandlerFunc{http.MethodPut: h.sessionRenew})
	route("/v1/session/info/", "session_info", map[string]http.HandlerFunc{http.MethodGet: h.sessionInfo})
	route("/v1/session/node/", "session_node", map[string]http.HandlerFunc{http.MethodGet: h.sessionNode})
	route("/v1/session/keys", "session_keys", map[string]http.HandlerFunc{http.MethodGet: h.sessionKeys})
	route("/v1/session/list", "session_list", map[string]http.HandlerFunc{http.MethodGet: h.sessionList})
	route("/v1/agent/self", "agent_self", map[string]http.HandlerFunc{http.MethodGet: h.agentSelf})
	route("/v1/agent/members", "agent_members", map[string]http.HandlerFunc{http.MethodGet: h.agentMembers})
	open("/v1/status/leader", "status_leader", map[string]http.HandlerFunc{http.MethodGet: h.statusLeader})
	open("/v1/status/peers", "status_peers", map[string]http.HandlerFunc{http.MethodGet: h.statusPeers})
	route("/v1/operator/raft/configuration", "raft_configuration", map[string]http.HandlerFunc{http.MethodGet: need(operatorRead, h.raftConfiguration)})
	route("/v1/operator/raft/peer", "raft_peer", map[string]http.HandlerFunc{
		http.MethodPut: need(operatorWrite, h.peerAdd), http.MethodDelete: need(operatorWrite, h.peerRemove),
	})
	route("/v1/operator/autopilot/health", "autopilot_health", map[string]http.HandlerFunc{http.MethodGet: need(operatorRead, h.autopilotHealth)})
	route("/v1/operator/raft/transfer-leader", "raft_transfer_leader", map[string]http.HandlerFunc{http.MethodPost: need(operatorWrite, h.transferLeader)})
	h.aclRoutes(mux)
	open("/healthz", "healthz", map[string]http.HandlerFunc{http.MethodGet: h.healthz})
	open("/readyz", "readyz", map[string]http.HandlerFunc{http.MethodGet: h.readyz})
	mux.Handle("/metrics", h.instrument("metrics", methodSwitch(map[string]http.HandlerFunc{
		http.MethodGet: promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}).ServeHTTP,
	})))
	if opts.EnablePprof {
		// The command line may hold -acl-initial-management: with ACLs on,
		// profiles are for management tokens only.
		for path, fn := range map[string]http.HandlerFunc{
			"/debug/pprof/": pprof.Index, "/debug/pprof/cmdline": pprof.Cmdline, "/debug/pprof/profile": pprof.Profile,
			"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
		} {
			mux.Handle(path, h.authenticated(need(aclWrite, fn)))
		}
	}
	if !opts.DisableUI {
		// The UI's files need no token: what the page shows comes from
		// API calls that carry the user's.
		mux.Handle(ui.Prefix, h.instrument("ui", ui.Handler()))
	}
	mux.Handle("/", h.instrument("unknown", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && !opts.DisableUI && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			http.Redirect(w, r, ui.Prefix, http.StatusMovedPermanently) // as Consul does
			return
		}
		writeError(w, fmt.Errorf("%w %s", kv.ErrNoSuchEndpoint, r.URL.Path))
	})))
	// Unclean paths ("/v1/kv//a", "/./") are redirected to the clean one
	// for GET and HEAD, as Consul does; other methods get 400 rather than a
	// redirect that clients would follow as a GET. Keys are routed before
	// the ServeMux, which has its own idea of paths.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w = outcomeWriter{w}
		}
		if r.Header.Get(wire.HeaderFailFast) == "" && opts.LeaderHold > 0 {
			r = r.WithContext(kv.WithLeaderHold(r.Context(), opts.LeaderHold))
		}
		if !isClean(r.URL.Path) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				writeError(w, fmt.Errorf("%w: unclean path %q", kv.ErrInvalid, r.URL.Path))
				return
			}
			target := cleanPath(r.URL.Path)
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
		if r.URL.Path == "/v1/kv" || strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			kvRoute.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
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
func methodSwitch(methods map[string]http.HandlerFunc) http.Handler {
	allow := ""
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if _, ok := methods[m]; ok {
			if allow != "" {
				allow += ", "
			}
			allow += m
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn, ok := methods[r.Method]; ok {
			fn(w, r)
			return
		}
		if r.Method == http.MethodHead {
			if fn, ok := methods[http.MethodGet]; ok {
				fn(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMethodNotAllowed)
		fmt.Fprintf(w, "method %s not allowed on %s (allowed: %s)\n", r.Method, r.URL.Path, allow)
	})
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
