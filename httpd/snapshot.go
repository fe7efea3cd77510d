package httpd

import (
	"fmt"
	"io"
	"net/http"

	"github.com/raftkv/raftkv/kv"
)

// snapshotSave streams GET /v1/snapshot. Headers go out with the first
// byte, so an error before it is answered normally; an error after it
// aborts the connection, so that a client never mistakes a truncated
// snapshot for a whole one (the stream's checksum also catches it).
func (h *handler) snapshotSave(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if has(q, "stale") && has(q, "consistent") {
		writeError(w, fmt.Errorf("%w: cannot use stale and consistent together", kv.ErrInvalid))
		return
	}
	lw := &lazyWriter{w: w}
	if err := h.store.SaveSnapshot(r.Context(), lw, has(q, "stale")); err != nil {
		if lw.started {
			h.logger.Warn("snapshot stream failed", "err", err)
			panic(http.ErrAbortHandler)
		}
		writeError(w, err)
	}
}

type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.Header().Set("Content-Disposition", `attachment; filename="raftkv.snap"`)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// snapshotRestore handles PUT /v1/snapshot: the body replaces the state of
// the whole cluster.
func (h *handler) snapshotRestore(w http.ResponseWriter, r *http.Request) {
	if err := h.store.RestoreSnapshot(r.Context(), r.Body); err != nil {
		writeError(w, err)
		return
	}
	_, _ = io.WriteString(w, "true\n")
}
