package kv

import (
	"context"
	"time"
)

// DefaultLeaderHold is how long Consul holds a request that finds no
// leader (its RPC hold timeout) before answering "No cluster leader".
const DefaultLeaderHold = 7 * time.Second

type leaderHoldKey struct{}

type leaderHold struct {
	until time.Time
	d     time.Duration
}

// WithLeaderHold marks a request that must wait up to d from now for a
// leader when none is known, as Consul holds its RPCs, even on a node that
// knows it is cut off from the majority. Consul's clients (Patroni among
// them) treat a quick refusal as an outage; raftkv's own clients, which
// move on to another node, leave their requests unmarked and are answered
// as soon as this node cannot expect a leader soon.
func WithLeaderHold(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, leaderHoldKey{}, leaderHold{until: time.Now().Add(d), d: d})
}

// RenewLeaderHold starts a request's hold again from now: a blocking query
// that has waited for minutes and then loses its leader is held as long as
// a request that just arrived. A request without a hold is returned as is.
func RenewLeaderHold(ctx context.Context) context.Context {
	if h, ok := ctx.Value(leaderHoldKey{}).(leaderHold); ok {
		return WithLeaderHold(ctx, h.d)
	}
	return ctx
}

// LeaderHoldUntil is when a request marked by WithLeaderHold stops
// waiting for a leader.
func LeaderHoldUntil(ctx context.Context) (time.Time, bool) {
	h, ok := ctx.Value(leaderHoldKey{}).(leaderHold)
	return h.until, ok
}
