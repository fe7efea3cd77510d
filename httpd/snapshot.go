package httpd

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// snapshotSave streams GET /v1/snapshot: Consul's archive, with the
// headers consul/api and `consul snapshot save` read. An error after the
// first byte aborts the connection, so that a client never mistakes a
// truncated snapshot for a whole one (the archive's checksums also catch it).
func (h *handler) snapshotSave(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if has(q, "stale") && has(q, "consistent") {
		writeError(w, fmt.Errorf("%w: cannot use stale and consistent together", kv.ErrInvalid))
		return
	}
	snap, err := h.store.OpenSnapshot(r.Context(), has(q, "stale"))
	if err != nil {
		writeError(w, err)
		return
	}
	defer snap.Close()
	addr, _ := h.store.Leader()
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Disposition", `attachment; filename="raftkv.snap"`)
	hd.Set("X-Consul-Index", strconv.FormatUint(max(snap.Index, 1), 10))
	hd.Set("X-Consul-KnownLeader", strconv.FormatBool(addr != ""))
	hd.Set("X-Consul-LastContact", strconv.FormatInt(h.store.LastContact().Milliseconds(), 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, snap); err != nil {
		h.logger.Warn("snapshot stream failed", "err", err)
		panic(http.ErrAbortHandler)
	}
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
