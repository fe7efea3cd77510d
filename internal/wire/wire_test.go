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
// to the client as a sentinel of the same status, and the statuses clients
// read as "not applied" and "maybe applied" stay those.
func TestStatusesRoundTrip(t *testing.T) {
	for _, s := range statuses {
		status := Status(fmt.Errorf("context: %w", s.err))
		if status != s.status {
			t.Fatalf("%v answered %d, want %d", s.err, status, s.status)
		}
		back := Sentinel(status)
		switch status {
		case http.StatusNotFound, http.StatusConflict:
			if back != nil {
				t.Fatalf("%d must be left to the caller, got %v", status, back)
			}
		default:
			if back == nil || Status(back) != status {
				t.Fatalf("%v → %d → %v", s.err, status, back)
			}
		}
	}
	if !errors.Is(Sentinel(503), kv.ErrNoLeader) || !errors.Is(Sentinel(504), kv.ErrUnknownOutcome) {
		t.Fatal("503 must read as not applied, 504 as maybe applied")
	}
	if Status(errors.New("anything else")) != 500 || Sentinel(200) != nil || Sentinel(429) != nil {
		t.Fatal("defaults")
	}
}

func TestShapesRoundTrip(t *testing.T) {
	e := kv.Entry{Key: "a/b", Value: []byte("v"), Flags: 3, CreateIndex: 4, ModifyIndex: 5, LockIndex: 2, Session: "s"}
	b, err := json.Marshal(FromEntry(e))
	if err != nil {
		t.Fatal(err)
	}
	var d DirEntry
	if err := json.Unmarshal(b, &d); err != nil || !reflect.DeepEqual(d.Entry(), e) {
		t.Fatalf("entry %s → %+v, %v", b, d.Entry(), err)
	}
	if b, _ := json.Marshal(FromEntry(kv.Entry{Key: "empty"})); !json.Valid(b) || !strings.Contains(string(b), `"Value":null`) {
		t.Fatalf("an empty value must be null: %s", b)
	}
	s := kv.Session{ID: "id", Name: "n", Node: "n1", LockDelay: 15 * time.Second, Behavior: "release", TTL: "10s",
		NodeChecks: []string{"serfHealth"}, CreateIndex: 7, ModifyIndex: 8}
	b, _ = json.Marshal(FromSession(s))
	var se SessionEntry
	if err := json.Unmarshal(b, &se); err != nil || !reflect.DeepEqual(se.Session(), s) {
		t.Fatalf("session %s → %+v, %v", b, se.Session(), err)
	}
	if b, _ := json.Marshal(FromSession(kv.Session{ID: "x"})); !strings.Contains(string(b), `"NodeChecks":[]`) {
		t.Fatalf("no checks must be [] on the wire: %s", b)
	}
}
