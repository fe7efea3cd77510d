package kv

import (
	"context"
	"time"
)

// DefaultLeaderHold is how long Consul holds a request that finds no
// leader (its RPC hold timeout) before answering "No cluster leader".
const DefaultLeaderHold = 7 * time.Second

type leaderHoldKey struct{}

// WithLeaderHold marks a request that must wait up to d from now for a
// leader when none is known, as Consul holds its RPCs, even on a node that
// knows it is cut off from the majority. Consul's clients (Patroni among
// them) treat a quick refusal as an outage; raftkv's own clients, which
// move on to another node, leave their requests unmarked and are answered
// as soon as this node cannot expect a leader soon.
func WithLeaderHold(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, leaderHoldKey{}, time.Now().Add(d))
}

// LeaderHoldUntil is when a request marked by WithLeaderHold stops
// waiting for a leader.
func LeaderHoldUntil(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(leaderHoldKey{}).(time.Time)
	return t, ok
}
