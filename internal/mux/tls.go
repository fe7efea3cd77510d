package mux

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/tlsutil"
)

// With TLS every connection to the port is TLS, and what it carries is
// told by ALPN after the handshake, not by sniffing (nothing is readable
// before it): ProtoRaft is raft's stream, ProtoForward the forwarding
// stream; anything else is HTTP (h2 or
// http/1.1), node-to-node calls included. A plaintext connection fails the
// handshake and is closed.
const ProtoRaft = "raftkv-raft"

// ProtoGroupRaft is the raft stream of a group other than group 0: the
// group's ID follows the handshake as a uvarint (see GroupRaftMarker).
const ProtoGroupRaft = "raftkv-raft-group"

// ProtoForward is the forwarding stream's (package fwdstream).
const ProtoForward = "raftkv-forward"

// httpProtos are offered to HTTP clients, HTTP/2 first.
var httpProtos = []string{"h2", "http/1.1"}

// TLS configures the port's TLS.
type TLS struct {
	Store *tlsutil.Store
	// VerifyIncoming demands a certificate signed by the CA from HTTP
	// clients too (peers must always present one).
	VerifyIncoming bool
}

// serverConfig decides per handshake: a peer asking for raft must present
// a certificate signed by the CA; an HTTP client must when VerifyIncoming.
func (t *TLS) serverConfig() *tls.Config {
	raftCfg := t.Store.Server(true, []string{ProtoRaft})
	groupRaftCfg := t.Store.Server(true, []string{ProtoGroupRaft})
	forwardCfg := t.Store.Server(true, []string{ProtoForward})
	httpCfg := t.Store.Server(t.VerifyIncoming, httpProtos)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if slices.Contains(hello.SupportedProtos, ProtoRaft) {
				return raftCfg.GetConfigForClient(hello)
			}
			if slices.Contains(hello.SupportedProtos, ProtoGroupRaft) {
				return groupRaftCfg.GetConfigForClient(hello)
			}
			if slices.Contains(hello.SupportedProtos, ProtoForward) {
				return forwardCfg.GetConfigForClient(hello)
			}
			return httpCfg.GetConfigForClient(hello)
		},
	}
}

// serveTLS accepts on the root listener, handshakes each connection in its
// own goroutine (bounded by the sniff timeout, so a silent client holds up
// no one) and hands it to raft or HTTP by its ALPN protocol.
func (m *Mux) serveTLS(t *TLS, handshakeTimeout time.Duration) {
	cfg := t.serverConfig()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := m.root.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
			if err := tc.Handshake(); err != nil {
				m.logger.Debug("mux: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
				c.Close()
				return
			}
			_ = tc.SetDeadline(time.Time{})
			switch tc.ConnectionState().NegotiatedProtocol {
			case ProtoRaft:
				m.raft.deliver(m, tc, 0)
			case ProtoGroupRaft:
				group, err := m.readGroup(tc)
				if err != nil {
					m.drop(tc, err)
					return
				}
				m.raft.deliver(m, tc, group)
			case ProtoForward:
				m.forward.deliver(tc)
			default:
				m.http.deliver(tc)
			}
		}()
	}
}

// dialTLS opens a TLS connection to a peer for proto, verifying that the
// peer's certificate is signed by the CA and names the host dialled.
func (m *Mux) dialTLS(ctx context.Context, c net.Conn, addr, proto string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		c.Close()
		return nil, err
	}
	tc := tls.Client(c, m.tls.Store.Client(host, []string{proto}))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("mux: TLS handshake with %s: %w", addr, err)
	}
	if tc.ConnectionState().NegotiatedProtocol != proto {
		tc.Close()
		return nil, fmt.Errorf("mux: %s did not agree to %s", addr, proto)
	}
	return tc, nil
}
