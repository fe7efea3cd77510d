package httpd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// SnapshotStore saves and restores the whole state (keys, sessions and
// ACLs) at once (/v1/snapshot).
type SnapshotStore interface {
	// OpenSnapshot takes a snapshot, linearizably unless stale.
	OpenSnapshot(ctx context.Context, stale bool) (*kv.Snapshot, error)
	// RestoreSnapshot replaces the state of the whole cluster with r's.
	RestoreSnapshot(ctx context.Context, r io.Reader) error
}

// snapshotSave streams GET /v1/snapshot: Consul's archive, with the
// headers consul/api and `consul snapshot save` read. An error after the
// first byte aborts the connection, so that a client never mistakes a
// truncated snapshot for a whole one (the archive's checksums also catch it).
func (h *handler) snapshotSave(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if has(q, "stale") && has(q, "consistent") {
		return fmt.Errorf("%w: cannot use stale and consistent together", kv.ErrInvalid)
	}
	snap, err := h.snapshots.OpenSnapshot(r.Context(), has(q, "stale"))
	if err != nil {
		return err
	}
	defer snap.Close()
	addr, _ := h.node.Leader()
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Disposition", `attachment; filename="raftkv.snap"`)
	hd.Set("X-Consul-Index", strconv.FormatUint(max(snap.Index, 1), 10))
	hd.Set("X-Consul-KnownLeader", strconv.FormatBool(addr != ""))
	hd.Set("X-Consul-LastContact", strconv.FormatInt(h.node.LastContact().Milliseconds(), 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, snap); err != nil {
		// Too late for an error answer: the status is out.
		h.logger.Warn("snapshot stream failed", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// snapshotRestore handles PUT /v1/snapshot: the body replaces the state of
// the whole cluster.
func (h *handler) snapshotRestore(w http.ResponseWriter, r *http.Request) error {
	if err := h.snapshots.RestoreSnapshot(r.Context(), r.Body); err != nil {
		return err
	}
	_, _ = io.WriteString(w, "true\n")
	return nil
}
