package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestHCLogGoesToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := HCLog(l, "raft")
	h.Debug("hidden", "k", 1)
	h.Info("entering leader state", "leader", "n1")
	h.Error("failed to heartbeat", "peer", "n2", "error", "refused")
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines (debug dropped), got:\n%s", out)
	}
	for _, want := range []string{`level=INFO msg="entering leader state" component=raft leader=n1`, `level=ERROR msg="failed to heartbeat" component=raft peer=n2 error=refused`} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Fatalf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Fatal("bad level accepted")
	}
}
