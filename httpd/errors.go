package httpd

import (
	"net/http"
	"strings"

	"github.com/raftkv/raftkv/internal/wire"
)

// statusOf is the status of err: the table lives in internal/wire, shared
// with the Go client.
func statusOf(err error) int { return wire.Status(err) }

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
