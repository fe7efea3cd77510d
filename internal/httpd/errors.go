package httpd

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// statusOf is the status of err: the table lives in internal/wire, shared
// with the Go client.
func statusOf(err error) int { return wire.Status(err) }

// writeError is the one place an error becomes an answer (handlers return
// their errors, see handlerFunc). Most answer with the status of err and
// a one-line reason, and name the error's wire code in a header so that
// raftkv's clients can tell apart what Consul answers with the same
// status. Two keep the shape Consul gives them: a transaction rolled back
// (txnRolledBack) and a method a route does not take (methodNotAllowed).
func writeError(w http.ResponseWriter, err error) {
	var rolledBack *txnRolledBack
	var notAllowed *methodNotAllowed
	switch {
	case errors.As(err, &rolledBack):
		writeJSON(w, http.StatusConflict, api.TxnResponse{Errors: rolledBack.errors})
		return
	case errors.As(err, &notAllowed):
		w.Header().Set("Allow", notAllowed.allow)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = io.WriteString(w, notAllowed.Error()+"\n")
		return
	}
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

// txnRolledBack is a transaction that applied nothing because some of its
// operations could not apply: Consul answers 409 with the transaction's
// own shape, Results null and one error per failing operation.
type txnRolledBack struct {
	errors []api.TxnError
}

func (e *txnRolledBack) Error() string {
	if len(e.errors) == 0 {
		return "transaction rolled back"
	}
	return fmt.Sprintf("transaction rolled back: %d operation(s) could not apply, first: operation %d: %s",
		len(e.errors), e.errors[0].OpIndex, e.errors[0].What)
}

func (e *txnRolledBack) Unwrap() error { return kv.ErrTxnFailed }

// methodNotAllowed is a request with a method its route does not take:
// 405 naming the ones it does (Allow).
type methodNotAllowed struct {
	method, path, allow string
}

func (e *methodNotAllowed) Error() string {
	return fmt.Sprintf("method %s not allowed on %s (allowed: %s)", e.method, e.path, e.allow)
}

// outcomeWriter marks every error answer to a write with what became of
// the write (wire.HeaderOutcome): "unknown" if the error says its fate is
// unknown, or is a server error of no known kind (a panic, a failure
// after the write committed); else "not-applied": every sentinel but
// kv.ErrUnknownOutcome is raised before anything was proposed. It marks
// what writeError writes and what it does not (the web UI's and the
// profiles' own refusals) alike.
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
