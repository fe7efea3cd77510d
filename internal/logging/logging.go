// Package logging routes the logs of raftkv's libraries into one log/slog
// stream: hashicorp/raft's hclog output becomes slog records with the same
// level and key/value pairs.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// HCLog returns an hclog.Logger whose records go to l.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   name,
		Output: io.Discard, // everything goes through the sink below
		Level:  levelFor(l),
	})
	il.RegisterSink(sink{l})
	return il
}

// levelFor picks the most verbose hclog level l would print, so that hclog
// does not format records slog would drop.
func levelFor(l *slog.Logger) hclog.Level {
	ctx := context.Background()
	switch {
	case l.Enabled(ctx, slog.LevelDebug):
		return hclog.Debug
	case l.Enabled(ctx, slog.LevelInfo):
		return hclog.Info
	case l.Enabled(ctx, slog.LevelWarn):
		return hclog.Warn
	default:
		return hclog.Error
	}
}

type sink struct{ l *slog.Logger }

func (s sink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	var lvl slog.Level
	switch level {
	case hclog.Trace, hclog.Debug:
		lvl = slog.LevelDebug
	case hclog.Info, hclog.DefaultLevel:
		lvl = slog.LevelInfo
	case hclog.Warn:
		lvl = slog.LevelWarn
	default:
		lvl = slog.LevelError
	}
	attrs := make([]any, 0, len(args)+2)
	attrs = append(attrs, "component", name)
	for i := 0; i+1 < len(args); i += 2 {
		attrs = append(attrs, fmt.Sprint(args[i]), args[i+1])
	}
	s.l.Log(context.Background(), lvl, strings.TrimSpace(msg), attrs...)
}

// ParseLevel maps "debug", "info", "warn" and "error" to slog levels.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}
