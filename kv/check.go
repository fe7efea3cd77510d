package kv

import "context"

// Check is a caller's own test of a write's operations, run by the node
// after it has validated the write and before it proposes it (the HTTP
// API's authorization: a token that may not touch a key). An error stops
// the write; nothing is done.
type Check func(ops []Op) error

type checkKey struct{}

// WithCheck returns ctx carrying check for the writes made with it.
func WithCheck(ctx context.Context, check Check) context.Context {
	return context.WithValue(ctx, checkKey{}, check)
}

// CheckOf is the check ctx carries, or nil.
func CheckOf(ctx context.Context) Check {
	c, _ := ctx.Value(checkKey{}).(Check)
	return c
}
