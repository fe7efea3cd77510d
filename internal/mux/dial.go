package mux

import (
	"context"
	"net"
	"time"
)

// DialContext opens a connection to a peer's shared port. Raft's stream
// layer and the node's forwarding client both dial through it, so that
// fault injection (build tag failpoints) cuts every kind of traffic between
// two peers.
func (m *Mux) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return m.dial(ctx, network, addr, "http/1.1")
}

// dial connects for proto: over TLS when the port speaks TLS (proto is
// then the ALPN protocol asked for), else in plaintext.
func (m *Mux) dial(ctx context.Context, network, addr, proto string) (net.Conn, error) {
	if err := m.faults.allow(addr); err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c = m.faults.track(addr, c)
	if m.tls != nil {
		return m.dialTLS(ctx, c, addr, proto)
	}
	return c, nil
}
