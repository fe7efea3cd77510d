package httpd

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// FuzzRequest sends arbitrary HTTP requests through the real handlers. No
// input may panic a handler (the recovery middleware turns that into a 500
// saying "internal error", a failure here), answer outside the API's
// statuses, or change state while being refused. A 500 naming a session is
// Consul's answer for an invalid session and is allowed.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /v1/kv/a?flags=3&cas=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
		"GET /v1/kv/a/?keys&separator=/&index=5&wait=10ms HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /v1/kv/a?recurse HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\n\r\n",
		"PUT /v1/txn HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n\r\n[{\"KV\":{\"Verb\":\"get\",\"Key\":\"a\"}},{\"KV\":{}}]",
		"PUT /v1/operator/raft/peer?id=n9&address=x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/operator/raft/transfer-leader?id=n2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/kv/%ff?raw&stale HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /. HTTP/0.0\n\n",
		"PUT /v1/kv/a?acquire=x HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /v1/session/create HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"TTL\":\"1s\"}",
		"GET /v1/operator/ranges HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/operator/range/split?key=a/ HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// One store for every input of this fuzzing process (opening Badger
	// per input leaves the fuzzer waiting on it): each input compares the
	// state before and after itself.
	store := newTestStore(f)
	allowed := map[int]bool{200: true, 301: true, 400: true, 401: true, 404: true, 405: true, 409: true, 413: true, 422: true, 429: true, 500: true, 501: true, 503: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // the server would refuse it before any handler
		}
		store.put(t, "a", "v")
		before := store.dump(t)
		rec := httptest.NewRecorder()
		New(allOf(store), Options{MaxValueBytes: 1024}).ServeHTTP(rec, req)
		if !allowed[rec.Code] || (rec.Code == 500 && strings.Contains(rec.Body.String(), "internal error")) {
			t.Fatalf("%q answered %d: %s", raw, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && rec.Code != 409 && store.dump(t) != before {
			t.Fatalf("%q was refused (%d) but changed state", raw, rec.Code)
		}
	})
}

// FuzzToken sends a write with arbitrary token material in the three
// places a token travels (?token=, X-Consul-Token, Authorization) to a
// node with ACLs on and default deny. Whatever the input, nothing panics,
// and the write is let through only if one of the three carries the one
// secret that may write, exactly; otherwise it is refused with 403 and
// changes nothing.
func FuzzToken(f *testing.F) {
	const good = "3a1c2e4f-0000-4000-8000-00000000c0de"
	f.Add("", good, "")
	f.Add("", "", "Bearer "+good)
	f.Add(good, "", "")
	f.Add("", "", "bearer  "+good+" ")
	f.Add("anonymous", "", "Basic "+good)
	f.Add("%00", good+"\x00", "Bearer")
	store := newTestStore(f) // one for every input of this fuzzing process
	store.resolver = acl.NewResolver(memACL{
		tokens:   map[string]*acl.Token{good: {AccessorID: "writer", SecretID: good, Policies: []acl.PolicyLink{{ID: "p"}}}},
		policies: map[string]*acl.Policy{"p": {ID: "p", Name: "p", Rules: `key "a" { policy = "write" }`}},
	}, false)
	f.Fuzz(func(t *testing.T, query, header, auth string) {
		store.write(t, kv.Op{Verb: kv.VerbDelete, Key: "a"})
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/a", strings.NewReader("v"))
		req.URL.RawQuery = url.Values{"token": {query}}.Encode()
		if header != "" {
			req.Header["X-Consul-Token"] = []string{header}
		}
		if auth != "" {
			req.Header["Authorization"] = []string{auth}
		}
		rec := httptest.NewRecorder()
		New(allOf(store), Options{MaxValueBytes: 1024}).ServeHTTP(rec, req)
		carries := query == good || (query == "" && header == good) ||
			(query == "" && header == "" && strings.Contains(auth, good))
		written := store.has(t, "a")
		switch {
		case rec.Code == http.StatusOK && !carries:
			t.Fatalf("token (%q, %q, %q) was let write", query, header, auth)
		case rec.Code != http.StatusOK && rec.Code != http.StatusForbidden:
			t.Fatalf("token (%q, %q, %q): %d %s", query, header, auth, rec.Code, rec.Body.String())
		case rec.Code == http.StatusForbidden && written:
			t.Fatalf("token (%q, %q, %q) was refused but wrote", query, header, auth)
		}
	})
}
