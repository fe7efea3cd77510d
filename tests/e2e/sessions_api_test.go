package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
)

// httpCall makes one request and returns the status and the trimmed body.
func httpCall(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// The sessions and locks rows of the API reference, through the real
// handlers, FSM and forwarding: every request goes to a follower.
func TestSessionAndLockAPI(t *testing.T) {
	c := startCluster(t, 3)
	_, followers := leaderAndFollowers(c)
	base := "http://" + followers[0].Addr
	expect := func(method, path, body string, status int, want string) string {
		t.Helper()
		got, b := httpCall(t, method, base+path, body)
		if got != status || (want != "" && b != want && !strings.Contains(b, want)) {
			t.Fatalf("%s %s %s: %d %q, want %d %q", method, path, body, got, b, status, want)
		}
		return b
	}
	create := func(body string) string {
		t.Helper()
		var out struct{ ID string }
		if err := json.Unmarshal([]byte(expect("PUT", "/v1/session/create", body, 200, `"ID"`)), &out); err != nil || out.ID == "" {
			t.Fatalf("create: %v", err)
		}
		return out.ID
	}
	entry := func(key string) (session string, lockIndex uint64, value string) {
		t.Helper()
		var es []struct {
			Session   string
			LockIndex uint64
			Value     []byte
		}
		if err := json.Unmarshal([]byte(expect("GET", "/v1/kv/"+key, "", 200, "")), &es); err != nil || len(es) != 1 {
			t.Fatalf("get %s: %v", key, err)
		}
		return es[0].Session, es[0].LockIndex, string(es[0].Value)
	}

	// Creation: defaults, Node of the receiving node, errors in Consul's words.
	a := create(`{"Name":"a","LockDelay":"1s"}`)
	b := create(`{"name":"b","lockdelay":1}`) // case-insensitive; 1 = one second
	info := expect("GET", "/v1/session/info/"+a, "", 200, `"Node":"`+followers[0].ID+`"`)
	for _, want := range []string{`"Behavior":"release"`, `"LockDelay":1000000000`, `"NodeChecks":["serfHealth"]`, `"TTL":""`} {
		if !strings.Contains(info, want) {
			t.Fatalf("session info %s lacks %s", info, want)
		}
	}
	expect("PUT", "/v1/session/create", `{"TTL":"5s"}`, 500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")
	expect("PUT", "/v1/session/create", `{"Node":"nowhere"}`, 500, "Missing node registration")
	expect("PUT", "/v1/session/create", `{"NodeChecks":["dne"]}`, 500, "Missing check 'dne' registration")
	expect("GET", "/v1/session/node/"+followers[0].ID, "", 200, a)
	if list := expect("GET", "/v1/session/list", "", 200, ""); !strings.Contains(list, a) || !strings.Contains(list, b) {
		t.Fatalf("list: %s", list)
	}
	expect("PUT", "/v1/session/renew/"+a, "", 200, a)

	// acquire / release.
	expect("PUT", "/v1/kv/svc/leader?acquire="+a, "first", 200, "true")
	if s, li, v := entry("svc/leader"); s != a || li != 1 || v != "first" {
		t.Fatalf("after acquire: %s %d %q", s, li, v)
	}
	expect("PUT", "/v1/kv/svc/leader?acquire="+a, "again", 200, "true") // re-acquire: value written, LockIndex kept
	expect("PUT", "/v1/kv/svc/leader?acquire="+b, "theirs", 200, "false")
	if s, li, v := entry("svc/leader"); s != a || li != 1 || v != "again" {
		t.Fatalf("after re-acquire and a refused acquire: %s %d %q", s, li, v)
	}
	expect("PUT", "/v1/kv/svc/leader?acquire=0d5cd2d3-2a45-4ad1-b4a7-c67f4e5cbd1d", "", 500, `invalid session "0d5cd2d3-2a45-4ad1-b4a7-c67f4e5cbd1d"`)
	expect("PUT", "/v1/kv/svc/leader", "plain", 200, "true") // plain writes ignore locks, keep the holder
	if s, _, v := entry("svc/leader"); s != a || v != "plain" {
		t.Fatalf("a plain write changed the holder: %s %q", s, v)
	}
	expect("PUT", "/v1/kv/svc/leader?release="+b, "", 200, "false")
	expect("PUT", "/v1/kv/svc/leader?release="+a, "released", 200, "true")
	expect("PUT", "/v1/kv/svc/leader?acquire="+b, "mine", 200, "true") // an explicit release sets no lock-delay
	if s, li, _ := entry("svc/leader"); s != b || li != 2 {
		t.Fatalf("after the second acquire: %s %d", s, li)
	}

	// Txn verbs and their errors.
	txn := func(ops ...string) string { return "[" + strings.Join(ops, ",") + "]" }
	op := func(verb, key, session string) string {
		return fmt.Sprintf(`{"KV":{"Verb":%q,"Key":%q,"Session":%q,"Value":"dg=="}}`, verb, key, session)
	}
	expect("PUT", "/v1/txn", txn(op("check-session", "svc/leader", b), op("set", "svc/state", "")), 200, `"Results"`)
	expect("PUT", "/v1/txn", txn(op("check-session", "svc/leader", a)), 409,
		fmt.Sprintf(`failed session check for key \"svc/leader\", current session \"%s\" != \"%s\"`, b, a))
	expect("PUT", "/v1/txn", txn(op("lock", "svc/leader", a)), 409, "")
	expect("PUT", "/v1/txn", txn(op("get-or-empty", "svc/missing", "")), 200, `"Key":"svc/missing"`)
	expect("PUT", "/v1/txn", txn(op("unlock", "svc/leader", b)), 200, "")
	if s, li, _ := entry("svc/leader"); s != "" || li != 2 {
		t.Fatalf("after a txn unlock: %q %d", s, li)
	}
	expect("PUT", "/v1/txn", txn(op("lock", "svc/leader", a)), 200, "")

	// Invalidation releases the key and starts lock-delay (1s for a).
	start := time.Now()
	expect("PUT", "/v1/session/destroy/"+a, "", 200, "true")
	expect("PUT", "/v1/session/destroy/"+a, "", 200, "true") // already gone: still true
	expect("PUT", "/v1/session/renew/"+a, "", 404, "Session id '"+a+"' not found")
	expect("GET", "/v1/session/info/"+a, "", 200, "[]")
	if s, li, _ := entry("svc/leader"); s != "" || li != 3 {
		t.Fatalf("after destroy: %q %d", s, li)
	}
	refused := 0
	testsupport.WaitFor(t, 10*time.Second, "lock-delay to end", func() error {
		if _, body := httpCall(t, "PUT", base+"/v1/kv/svc/leader?acquire="+b, "after"); body != "true" {
			refused++
			return fmt.Errorf("acquire answered %s", body)
		}
		return nil
	})
	if refused == 0 || time.Since(start) < time.Second {
		t.Fatalf("lock-delay not enforced: acquired after %s, %d refusals", time.Since(start), refused)
	}
	expect("PUT", "/v1/txn", txn(op("lock", "svc/leader", a)), 409, "")

	// Behavior delete removes the key; LockIndex continues after it is recreated.
	d := create(`{"Behavior":"delete","LockDelay":"0s"}`)
	expect("PUT", "/v1/kv/svc/ephemeral?acquire="+d, "x", 200, "true")
	expect("PUT", "/v1/session/destroy/"+d, "", 200, "true")
	expect("GET", "/v1/kv/svc/ephemeral", "", 404, "")
	e := create(`{"LockDelay":"0s"}`)
	expect("PUT", "/v1/kv/svc/ephemeral?acquire="+e, "y", 200, "true")
	if _, li, _ := entry("svc/ephemeral"); li != 2 {
		t.Fatalf("LockIndex after delete and re-create: %d, want 2", li)
	}

	// A blocking query on a session returns when it is destroyed.
	resp, err := http.Get(base + "/v1/session/info/" + e)
	if err != nil {
		t.Fatal(err)
	}
	index := resp.Header.Get("X-Consul-Index")
	resp.Body.Close()
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/v1/session/info/" + e + "?wait=30s&index=" + index)
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- strings.TrimSpace(string(b))
	}()
	expect("PUT", "/v1/session/destroy/"+e, "", 200, "true")
	select {
	case body := <-done:
		if body != "[]" {
			t.Fatalf("blocking info after destroy: %s", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a blocking session query did not return on destroy")
	}
}
