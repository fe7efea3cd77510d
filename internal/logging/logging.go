// Package logging routes the logs of raftkv's libraries into one log/slog
// stream: hashicorp/raft's hclog output becomes slog records with the same
// level and key/value pairs, made readable on the way: format verbs
// (hclog.Fmt) are applied, Stringers and errors become strings, keys lose
// their spaces, a failure repeated against the same peer is logged once
// per window with a count, and the errors raft logs during a clean shutdown
// are not reported as errors.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// RepeatWindow is how long a repeated warning or error (same message, same
// peer) is held back after it was logged.
const RepeatWindow = 30 * time.Second

// HCLog returns an hclog.Logger whose records go to l.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	return hcLog(l, name, time.Now)
}

func hcLog(l *slog.Logger, name string, now func() time.Time) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   name,
		Output: io.Discard, // everything goes through the sink below
		Level:  levelFor(l),
	})
	il.RegisterSink(&sink{l: l, now: now, seen: map[string]*repeat{}})
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

type sink struct {
	l   *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seen map[string]*repeat // message+peer → its window
}

type repeat struct {
	since      time.Time
	suppressed int
}

func (s *sink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	lvl := slogLevel(level)
	msg = strings.TrimSpace(msg)
	attrs := make([]any, 0, len(args)+4)
	attrs = append(attrs, "component", name)
	var peer string
	for i := 0; i+1 < len(args); i += 2 {
		key := strings.ReplaceAll(fmt.Sprint(args[i]), " ", "_")
		val := value(args[i+1])
		if lvl >= slog.LevelWarn && isNoise(val) {
			lvl = slog.LevelDebug // a clean shutdown, or nothing to do, is not an error
		}
		switch key {
		case "peer", "server-id", "id", "peer_id":
			peer = fmt.Sprint(val)
		}
		attrs = append(attrs, key, val)
	}
	if lvl >= slog.LevelWarn {
		n, ok := s.admit(name+"\x00"+msg+"\x00"+peer, lvl)
		if !ok {
			return
		}
		if n > 0 {
			attrs = append(attrs, "repeated", n)
		}
	}
	s.l.Log(context.Background(), lvl, msg, attrs...)
}

// admit lets the first of a series of repeats through, then one per
// RepeatWindow saying how many were held back.
func (s *sink) admit(key string, lvl slog.Level) (suppressed int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r := s.seen[key]
	if r == nil || now.Sub(r.since) >= RepeatWindow {
		n := 0
		if r != nil {
			n = r.suppressed
		}
		s.seen[key] = &repeat{since: now}
		if len(s.seen) > 1024 { // forget old series rather than grow
			for k, v := range s.seen {
				if now.Sub(v.since) >= RepeatWindow {
					delete(s.seen, k)
				}
			}
		}
		return n, true
	}
	r.suppressed++
	return 0, false
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// value makes an hclog argument printable by any slog handler: format
// verbs applied, Stringers and errors as their text, anything that is not
// a plain value (structs, pointers, slices) formatted with %+v.
func value(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		if f, ok := x[0].(string); ok {
			return fmt.Sprintf(f, x[1:]...)
		}
		return fmt.Sprint(x...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(x))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(x))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(x))
	case error:
		return x.Error()
	case time.Duration:
		return x.String()
	case time.Time:
		return x
	case fmt.Stringer:
		return x.String()
	case string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return x
	}
	return fmt.Sprintf("%+v", v)
}

// isNoise: errors raft reports while its transport closes, and a periodic
// snapshot finding nothing new.
func isNoise(v any) bool {
	s, ok := v.(string)
	return ok && (strings.Contains(s, "transport shutdown") || strings.Contains(s, "raft is already shutdown") ||
		strings.Contains(s, "use of closed network connection") || strings.Contains(s, "nothing new to snapshot"))
}

// ParseLevel maps "debug", "info", "warn" and "error" to slog levels.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}
