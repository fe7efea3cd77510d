package httpd

import (
	"errors"
	"net/http"
	"strings"

	"github.com/raftkv/raftkv/kv"
)

// statusOf is the one place where sentinel errors become HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, kv.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, kv.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, kv.ErrNotFound), errors.Is(err, kv.ErrUnknownPeer):
		return http.StatusNotFound
	case errors.Is(err, kv.ErrCASMismatch), errors.Is(err, kv.ErrTxnFailed):
		return http.StatusConflict
	case errors.Is(err, kv.ErrNoLeader), errors.Is(err, kv.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, kv.ErrUnknownOutcome):
		return http.StatusGatewayTimeout
	case errors.Is(err, kv.ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, kv.ErrIdempotencyKeyReused):
		return http.StatusUnprocessableEntity
	case errors.Is(err, kv.ErrSession):
		return http.StatusInternalServerError // Consul's status; clients match the text
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers with the status of err and a one-line plain-text reason.
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	_, _ = w.Write([]byte(msg + "\n"))
}
