package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type server struct {
	ID      string
	Address string
}

type state int

func (state) String() string { return "Leader" }

// What raft hands hclog must read well in both handlers: no format verbs,
// no "{}" for values JSON cannot see into, no spaces in keys.
func TestValuesAreFormatted(t *testing.T) {
	servers := []server{{"n1", "127.0.0.1:7001"}}
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		var h slog.Handler = slog.NewTextHandler(&buf, nil)
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		}
		l := HCLog(slog.New(h), "raft")
		l.Info("initial configuration", "servers", hclog.Fmt("%+v", servers), "percent-complete", hclog.Fmt("%0.2f%%", 100.0),
			"state", state(1), "backoff time", 10*time.Millisecond, "error", errors.New("boom"), "follower", &server{"n2", "x"})
		out := buf.String()
		for _, bad := range []string{"%+v", "%0.2f", "{}", "backoff time"} {
			if strings.Contains(out, bad) {
				t.Fatalf("%s: %q in %s", format, bad, out)
			}
		}
		for _, want := range []string{"[{ID:n1 Address:127.0.0.1:7001}]", "100.00%", "Leader", "backoff_time", "10ms", "boom", "ID:n2"} {
			if !strings.Contains(out, want) {
				t.Fatalf("%s: %q missing from %s", format, want, out)
			}
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("not one JSON object: %s", out)
			}
		}
	}
}

// A peer that stays down is reported once per window, with a count, not
// twice a second; another peer or message is its own series.
func TestRepeatedFailuresAreSummarised(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := hcLog(slog.New(slog.NewTextHandler(&buf, nil)), "raft", func() time.Time { return now })
	for range 61 { // 0s … 30s
		l.Error("failed to heartbeat to", "peer", "10.0.0.2:7000", "error", "dial tcp: connection refused")
		now = now.Add(500 * time.Millisecond)
	}
	l.Error("failed to heartbeat to", "peer", "10.0.0.3:7000", "error", "refused")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (first, one summary after 30s, other peer), got %d:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[1], "repeated=59") {
		t.Fatalf("the summary line does not count the held-back repeats: %s", lines[1])
	}
}

// Errors raft logs while a node shuts down cleanly are not errors.
func TestShutdownIsNotAnError(t *testing.T) {
	var buf bytes.Buffer
	l := HCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l.Error("failed to decode incoming command", "error", errors.New("transport shutdown"))
	l.Error("failed to take snapshot", "error", errors.New("nothing new to snapshot"))
	if buf.Len() != 0 {
		t.Fatalf("logged at info or above: %s", buf.String())
	}
}
