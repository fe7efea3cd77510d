package httpd

import (
	"net/http"

	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// statusOf is the status of err: the table lives in internal/wire, shared
// with the Go client.
func statusOf(err error) int { return wire.Status(err) }

// writeError answers with the status of err and a one-line reason, and
// names the error's wire code in a header so that raftkv's clients can
// tell apart what Consul answers with the same status.
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if code := kv.Code(err); code != "internal" {
		w.Header().Set(wire.HeaderError, code)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(wire.Message(err) + "\n"))
}

// outcomeWriter marks every error answer to a write with what became of
// the write (wire.HeaderOutcome): "unknown" if the error says its fate is
// unknown, or is a server error of no known kind (a panic, a failure
// after the write committed); else "not-applied": every sentinel but
// kv.ErrUnknownOutcome is raised before anything was proposed.
type outcomeWriter struct {
	http.ResponseWriter
}

func (o outcomeWriter) WriteHeader(status int) {
	if status >= 400 && o.Header().Get(wire.HeaderOutcome) == "" {
		outcome := wire.OutcomeNotApplied
		code := o.Header().Get(wire.HeaderError)
		if code == kv.Code(kv.ErrUnknownOutcome) || (status >= 500 && code == "") {
			outcome = wire.OutcomeUnknown
		}
		o.Header().Set(wire.HeaderOutcome, outcome)
	}
	o.ResponseWriter.WriteHeader(status)
}

func (o outcomeWriter) Flush() {
	if f, ok := o.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (o outcomeWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }
