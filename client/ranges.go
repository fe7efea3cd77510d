package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
)

// Range is one range of the keyspace: the keys in [Start, End), its own
// raft group.
type Range = api.Range

// RangeReplica is one member of a range's raft group.
type RangeReplica = api.RangeReplica

// RangeSplit is a split's two halves.
type RangeSplit = api.RangeSplit

// Ranges lists the keyspace's ranges in key order (operator:read). A node
// that runs the keyspace as one range lists none.
func (c *Client) Ranges(ctx context.Context) ([]Range, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/operator/ranges", repeatable: true})
	if err != nil {
		return nil, err
	}
	var rs []Range
	return rs, decode(resp, &rs)
}

// SplitRange cuts the range holding key in two at key and returns both
// halves (operator:write). key must end with "/" and lie strictly inside
// its range; a node that runs the keyspace as one range answers
// kv.ErrNotImplemented.
//
// A split is sent again only when it certainly did nothing (no leader, a
// node shutting down): it carries no Idempotency-Key, so a resent split
// that had applied would be refused, its key being a boundary already.
// When its fate is unknown the error matches kv.ErrUnknownOutcome; Ranges
// says whether it applied.
func (c *Client) SplitRange(ctx context.Context, key string) (RangeSplit, error) {
	if key == "" {
		return RangeSplit{}, kv.Errorf(kv.ErrInvalid, "a split needs a key")
	}
	resp, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/operator/range/split?" + url.Values{"key": {key}}.Encode()})
	if err != nil {
		return RangeSplit{}, err
	}
	var s RangeSplit
	return s, decode(resp, &s)
}

// KeepWhole keeps prefix in one range from now on (a split never cuts
// inside it), or, keep false, lets it go. Sent again it changes nothing,
// so it is retried like any idempotent write.
func (c *Client) KeepWhole(ctx context.Context, prefix string, keep bool) error {
	if prefix == "" {
		return kv.Errorf(kv.ErrInvalid, "keep-whole needs a prefix")
	}
	method := http.MethodPut
	if !keep {
		method = http.MethodDelete
	}
	resp, err := c.do(ctx, request{method: method, path: "/v1/operator/range/keep-whole?" + url.Values{"prefix": {prefix}}.Encode()})
	if err != nil {
		return err
	}
	var ok bool
	return decode(resp, &ok)
}
