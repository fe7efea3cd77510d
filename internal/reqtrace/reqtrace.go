// Package reqtrace tells, after an HTTP request failed, whether it may have
// reached the server: the line between "certainly not applied" (retry it
// anywhere) and "outcome unknown" for a write.
//
// A request may have arrived once a connection was obtained for it, unless
// writing it failed: a server acts on a request only when it has read all
// of it. Waiting for the "request written" event instead would be wrong
// the other way: a cancellation just after the last byte reached the kernel
// but before the event fired would call a delivered request unsent.
package reqtrace

import (
	"context"
	"net/http/httptrace"
	"sync/atomic"
)

// Tracker follows one request.
type Tracker struct {
	gotConn     atomic.Bool
	writeFailed atomic.Bool
}

// With returns ctx traced by a new Tracker; send the request with it.
func With(ctx context.Context) (context.Context, *Tracker) {
	t := &Tracker{}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { t.gotConn.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err != nil {
				t.writeFailed.Store(true)
			}
		},
	}), t
}

// MayHaveArrived reports whether the server may have received the whole
// request.
func (t *Tracker) MayHaveArrived() bool { return t.gotConn.Load() && !t.writeFailed.Load() }
