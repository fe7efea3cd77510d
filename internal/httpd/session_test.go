package httpd

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/wire"
)

func createdSession(t *testing.T, r response) string {
	t.Helper()
	var out struct{ ID string }
	if r.status != 200 || json.Unmarshal([]byte(r.body), &out) != nil || out.ID == "" {
		t.Fatalf("create: %d %q", r.status, r.body)
	}
	return out.ID
}

func info(t *testing.T, r response) wire.SessionEntry {
	t.Helper()
	var out []wire.SessionEntry
	if r.status != 200 || json.Unmarshal([]byte(r.body), &out) != nil || len(out) != 1 {
		t.Fatalf("info: %d %q", r.status, r.body)
	}
	return out[0]
}

func TestSessionCreateDefaultsAndSpellings(t *testing.T) {
	srv, _ := newTestServer(t)
	cases := []struct {
		name, body string
		check      func(e wire.SessionEntry) bool
	}{
		{"no body: Consul's defaults", "", func(e wire.SessionEntry) bool {
			return e.Node == "n1" && e.LockDelay == 15*time.Second && e.Behavior == "release" && e.TTL == "" &&
				len(e.NodeChecks) == 1 && e.NodeChecks[0] == "serfHealth"
		}},
		{"lower-case fields, lock-delay in seconds", `{"name":"x","ttl":"10s","lockdelay":20,"behavior":"delete"}`, func(e wire.SessionEntry) bool {
			return e.Name == "x" && e.TTL == "10s" && e.LockDelay == 20*time.Second && e.Behavior == "delete"
		}},
		{"lock-delay as a duration", `{"LockDelay":"1500ms"}`, func(e wire.SessionEntry) bool { return e.LockDelay == 1500*time.Millisecond }},
		{"lock-delay in nanoseconds", `{"LockDelay":2000000000}`, func(e wire.SessionEntry) bool { return e.LockDelay == 2*time.Second }},
		{"no node checks", `{"NodeChecks":[]}`, func(e wire.SessionEntry) bool { return e.NodeChecks != nil && len(e.NodeChecks) == 0 }},
		{"no checks, old field", `{"Checks":[]}`, func(e wire.SessionEntry) bool { return len(e.NodeChecks) == 0 }},
	}
	for _, c := range cases {
		id := createdSession(t, do(t, srv, "PUT", "/v1/session/create", c.body))
		r := do(t, srv, "GET", "/v1/session/info/"+id, "")
		e := info(t, r)
		if !c.check(e) {
			t.Fatalf("%s: %+v", c.name, e)
		}
		if c.name == "no node checks" && !strings.Contains(r.body, `"NodeChecks":[]`) {
			t.Fatalf("empty checks must be [] on the wire: %s", r.body)
		}
	}
}

func TestSessionErrorsInConsulsWords(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, c := range []struct{ method, path, body, want string }{
		{"PUT", "/v1/session/create", `{"TTL":"5s"}`, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"},
		{"PUT", "/v1/session/create", `{"Checks":["web"]}`, "Missing check 'web' registration"},
		{"PUT", "/v1/session/renew/abc", "", "Session id 'abc' not found"},
		{"PUT", "/v1/session/destroy/", "", "Missing session"},
		{"GET", "/v1/session/node/", "", "Missing node name"},
		{"PUT", "/v1/kv/k?acquire=s1&cas=0", "", "Conflicting flags: acquire=s1&cas=0"},
	} {
		r := do(t, srv, c.method, c.path, c.body)
		if strings.TrimSpace(r.body) != c.want {
			t.Fatalf("%s %s: %d %q, want %q", c.method, c.path, r.status, r.body, c.want)
		}
	}
	// Unknown sessions read as empty lists; destroying one is fine.
	if r := do(t, srv, "GET", "/v1/session/info/nope", ""); r.status != 200 || strings.TrimSpace(r.body) != "[]" || r.header.Get("X-Consul-Index") == "" {
		t.Fatalf("info of an unknown session: %d %q", r.status, r.body)
	}
	if r := do(t, srv, "PUT", "/v1/session/destroy/nope", ""); r.status != 200 || strings.TrimSpace(r.body) != "true" {
		t.Fatalf("destroy of an unknown session: %d %q", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/session/list", ""); r.status != 200 || strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("empty list: %d %q", r.status, r.body)
	}
}

func TestAgentSelf(t *testing.T) {
	srv, _ := newTestServer(t)
	r := do(t, srv, "GET", "/v1/agent/self", "")
	// consul/api decodes it as map[string]map[string]any: every value an object or null.
	var self map[string]map[string]any
	if r.status != 200 || json.Unmarshal([]byte(r.body), &self) != nil {
		t.Fatalf("agent/self: %d %q", r.status, r.body)
	}
	if self["Config"]["NodeName"] != "n1" || self["Member"]["Addr"] != "127.0.0.1" || self["Member"]["Port"] != float64(7001) ||
		self["Config"]["SessionTTLMin"] != float64(10e9) {
		t.Fatalf("agent/self: %s", r.body)
	}
}
