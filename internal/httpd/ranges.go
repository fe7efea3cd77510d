package httpd

import (
	"context"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
)

// RangeStore is the keyspace's ranges (/v1/operator/ranges,
// /v1/operator/range/split). Nil in Stores: the node runs the keyspace as
// one range, as before ranges; the listing is empty and a split answers
// 501.
type RangeStore interface {
	// Ranges lists every range of the keyspace in key order.
	Ranges(ctx context.Context) ([]api.Range, error)
	// SplitRange cuts the range holding key in two at key and returns
	// both halves. The split rules (key ends with "/", lies strictly
	// inside its range, not inside a prefix kept whole) are the store's
	// to check: they need the range map, which only it has; a broken rule
	// is kv.ErrInvalid.
	SplitRange(ctx context.Context, key string) (api.RangeSplit, error)
	// KeepWhole keeps prefix in one range (a split never cuts inside it),
	// or, keep false, lets it go; kv.ErrInvalid if a boundary already
	// falls inside it.
	KeepWhole(ctx context.Context, prefix string, keep bool) error
	// Route says where writes of key go: the range holding it here and
	// that range's leader (api.RouteHeader); false if this node cannot
	// say.
	Route(key string) (api.Route, bool)
}

// setRoute names, in a write's answer, where writes of key go: a client
// that knows may send the next ones there itself. Only to a token that may
// list the ranges (operator:read): the range's bounds are keys outside
// what the token may see.
func (h *handler) setRoute(w http.ResponseWriter, r *http.Request, key string) {
	if h.ranges == nil || operatorRead(identity(r)) != nil {
		return
	}
	if route, ok := h.ranges.Route(key); ok {
		w.Header().Set(api.RouteHeader, route.Header())
	}
}

// rangeList answers GET /v1/operator/ranges. A node without a RangeStore
// has no ranges to show: [] rather than null or an error, so that tools
// written for ranges read a node that predates them as one with nothing
// listed.
func (h *handler) rangeList(w http.ResponseWriter, r *http.Request) error {
	ranges := []api.Range{}
	if h.ranges != nil {
		got, err := h.ranges.Ranges(r.Context())
		if err != nil {
			return err
		}
		if got != nil {
			ranges = got
		}
	}
	writeJSON(w, http.StatusOK, ranges)
	return nil
}

// rangeSplit answers POST (or PUT) /v1/operator/range/split?key=K. The
// request takes no Idempotency-Key (its entries carry one of their own
// within the call): sent twice, the second finds K already a boundary and
// is refused.
func (h *handler) rangeSplit(w http.ResponseWriter, r *http.Request) error {
	// Checked before the key: whatever the request, this node cannot
	// split, and saying so first spares fixing a request for nothing.
	if h.ranges == nil {
		return fmt.Errorf("%w: this node runs the keyspace as one range and cannot split it", kv.ErrNotImplemented)
	}
	key := r.URL.Query().Get("key")
	switch {
	case key == "":
		return fmt.Errorf("%w: need a key query parameter: where to split, ending in \"/\"", kv.ErrInvalid)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: split key is not valid UTF-8", kv.ErrInvalid)
	case len(key) > kv.MaxKeyBytes:
		return fmt.Errorf("%w: split key is %d bytes, limit %d", kv.ErrInvalid, len(key), kv.MaxKeyBytes)
	}
	split, err := h.ranges.SplitRange(r.Context(), key)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, split)
	return nil
}

// rangeKeepWhole answers PUT /v1/operator/range/keep-whole?prefix=P (keep
// P in one range from now on) and DELETE (let it go): 200 true.
func (h *handler) rangeKeepWhole(w http.ResponseWriter, r *http.Request) error {
	if h.ranges == nil {
		return fmt.Errorf("%w: this node runs the keyspace as one range", kv.ErrNotImplemented)
	}
	prefix := r.URL.Query().Get("prefix")
	switch {
	case prefix == "":
		return fmt.Errorf("%w: need a prefix query parameter: the prefix to keep in one range", kv.ErrInvalid)
	case !utf8.ValidString(prefix):
		return fmt.Errorf("%w: prefix is not valid UTF-8", kv.ErrInvalid)
	case len(prefix) > kv.MaxKeyBytes:
		return fmt.Errorf("%w: prefix is %d bytes, limit %d", kv.ErrInvalid, len(prefix), kv.MaxKeyBytes)
	}
	if err := h.ranges.KeepWhole(r.Context(), prefix, r.Method != http.MethodDelete); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, true)
	return nil
}
