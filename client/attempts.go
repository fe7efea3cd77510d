package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/raftkv/raftkv/kv"
)

// attempts keeps, for one logical call, each endpoint's last answer, so
// that a call that gives up says what every node said, not only the last
// one asked.
type attempts struct {
	method, path string
	repeatable   bool
	endpoints    []string
	last         []error // by endpoint index; nil: not asked yet
	latest       error
	// maybe is the first answer that left the request's fate unknown: once
	// a write may have applied, no later refusal makes it "not applied".
	maybe error
}

func (c *Client) newAttempts(r request) *attempts {
	return &attempts{method: r.method, path: showURL(r.path), repeatable: r.repeatable, endpoints: c.endpoints, last: make([]error, len(c.endpoints))}
}

// end is the error a call ends with on answer err: err itself when it is
// final (retrying cannot change it), every endpoint's last answer when the
// call ran out of time while asking.
func (a *attempts) end(ctx context.Context, err error) error {
	if ctx.Err() == nil || !retryable(err, a.repeatable) {
		return err
	}
	return fmt.Errorf("%w (gave up: %s)", &callError{a: a.snapshot()}, describe(ctx.Err()))
}

// add records endpoint ep's answer err and returns the error the call
// stands at: every endpoint's last answer.
func (a *attempts) add(ep int, err error) error {
	a.last[ep] = err
	a.latest = err
	if a.maybe == nil && errors.Is(err, kv.ErrUnknownOutcome) {
		a.maybe = err
	}
	return &callError{a: a.snapshot()}
}

func (a *attempts) snapshot() *attempts {
	cp := *a
	cp.last = append([]error(nil), a.last...)
	return &cp
}

// callError is every endpoint's last answer to one call. It matches
// (errors.Is, errors.As) what the latest answer matches, or, if any answer
// left the outcome unknown, what that one matches.
type callError struct{ a *attempts }

func (e *callError) Unwrap() error {
	if e.a.maybe != nil {
		return e.a.maybe
	}
	return e.a.latest
}

func (e *callError) Error() string {
	var asked []int
	for i, err := range e.a.last {
		if err != nil {
			asked = append(asked, i)
		}
	}
	if len(asked) == 1 {
		return e.a.last[asked[0]].Error()
	}
	var b strings.Builder
	b.WriteString(e.a.method + " " + e.a.path + ": no node could serve this: ")
	for n, i := range asked {
		if n > 0 {
			b.WriteString("; ")
		}
		b.WriteString(hostOf(e.a.endpoints[i]) + ": " + answerOf(e.a.last[i]))
	}
	return b.String()
}

// answerOf is what an endpoint said, without the request it was asked.
func answerOf(err error) string {
	var ce *errConn
	if errors.As(err, &ce) {
		return describe(ce.err)
	}
	var re *requestError
	if errors.As(err, &re) {
		return describe(re.err)
	}
	return describe(err)
}

// hostOf is an endpoint's host:port.
func hostOf(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return endpoint
	}
	return u.Host
}
