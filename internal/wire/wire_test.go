package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Both directions agree: every sentinel the server answers with comes back
// to the client as the same sentinel (by the code it names), and answers
// without a code map by status only where the status is unambiguous.
func TestStatusesRoundTrip(t *testing.T) {
	for _, s := range statuses {
		err := fmt.Errorf("context: %w", s.err)
		status := Status(err)
		if status != s.status {
			t.Fatalf("%v answered %d, want %d", s.err, status, s.status)
		}
		h := http.Header{}
		h.Set(HeaderError, kv.Code(err))
		if back := Sentinel(status, h); back != s.err {
			t.Fatalf("%v → %d %s → %v", s.err, status, kv.Code(err), back)
		}
		back := Sentinel(status, nil)
		switch status {
		case http.StatusNotFound, http.StatusConflict, http.StatusInternalServerError:
			if back != nil {
				t.Fatalf("%d without a code must be left to the caller, got %v", status, back)
			}
		default:
			if back == nil || Status(back) != status {
				t.Fatalf("%v → %d → %v", s.err, status, back)
			}
		}
	}
	// Consul's clients retry a 500 and give up on other 5xx.
	if Status(kv.ErrNoLeader) != 500 || Status(kv.ErrUnknownOutcome) != 500 || Message(kv.ErrNoLeader) != "No cluster leader" {
		t.Fatal("no leader and an unknown outcome must be Consul's 500, no leader in Consul's words")
	}
	if Status(errors.New("anything else")) != 500 || Sentinel(200, nil) != nil || Sentinel(429, nil) != nil {
		t.Fatal("defaults")
	}
	h := http.Header{}
	h.Set(HeaderError, "something new")
	if Sentinel(500, h) != nil {
		t.Fatal("an unknown code must not become a sentinel")
	}
}

func TestShapesRoundTrip(t *testing.T) {
	s := kv.Session{ID: "id", Name: "n", Node: "n1", LockDelay: 15 * time.Second, Behavior: "release", TTL: "10s",
		NodeChecks: []string{"serfHealth"}, CreateIndex: 7, ModifyIndex: 8}
	b, _ := json.Marshal(FromSession(s))
	var se SessionEntry
	if err := json.Unmarshal(b, &se); err != nil || !reflect.DeepEqual(se.Session(), s) {
		t.Fatalf("session %s → %+v, %v", b, se.Session(), err)
	}
	if b, _ := json.Marshal(FromSession(kv.Session{ID: "x"})); !strings.Contains(string(b), `"NodeChecks":[]`) {
		t.Fatalf("no checks must be [] on the wire: %s", b)
	}
}
