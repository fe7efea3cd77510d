package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/soheilhy/cmux"
)

// RaftMarker is the first byte of every raft connection. HTTP requests start
// with an ASCII method name and TLS with 0x16, so 0x01 cannot be confused
// with either.
const RaftMarker byte = 0x01

// ForwardMarker is the first byte of every forwarding stream (writes a
// follower sends its leader; package fwdstream).
const ForwardMarker byte = 0x02

// DefaultSniffTimeout bounds how long a new connection may take to send the
// bytes that tell raft from HTTP.
const DefaultSniffTimeout = 5 * time.Second

// Mux serves one listener to raft and HTTP.
type Mux struct {
	root      net.Listener
	cm        cmux.CMux
	advertise net.Addr
	logger    *slog.Logger

	raft    *RaftLayer
	http    *childListener
	forward *childListener
	faults  faults
	tls     *TLS // nil: plaintext, split by sniffing

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Options tune a Mux.
type Options struct {
	// Advertise is the address peers and clients use to reach this node
	// (default: the listener's address). It must not be unspecified (0.0.0.0).
	Advertise    string
	SniffTimeout time.Duration
	Logger       *slog.Logger
	// TLS, if set, makes every connection TLS, split by ALPN.
	TLS *TLS
}

// New starts splitting ln. The Mux owns ln from now on.
func New(ln net.Listener, opts Options) (*Mux, error) {
	advertise, err := advertiseAddr(ln.Addr(), opts.Advertise)
	if err != nil {
		return nil, err
	}
	if opts.SniffTimeout <= 0 {
		opts.SniffTimeout = DefaultSniffTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mux{root: ln, advertise: advertise, logger: opts.Logger, tls: opts.TLS}
	m.raft = &RaftLayer{childListener: newChild(advertise), sniffTimeout: opts.SniffTimeout, mux: m}
	m.http = newChild(ln.Addr())
	m.forward = newChild(advertise)
	if opts.TLS != nil {
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.serveTLS(opts.TLS, opts.SniffTimeout) }()
		return m, nil
	}
	m.cm = cmux.New(ln)
	m.cm.SetReadTimeout(opts.SniffTimeout)
	m.cm.HandleError(func(err error) bool {
		var nm cmux.ErrNotMatched
		if !errors.As(err, &nm) {
			m.logger.Debug("mux: accept error", "err", err)
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: do not spin
		}
		return true // keep serving; a bad connection is that connection's problem
	})
	marked := func(marker byte) cmux.Matcher {
		return func(r io.Reader) bool {
			var b [1]byte
			n, _ := io.ReadFull(r, b[:])
			return n == 1 && b[0] == marker
		}
	}
	raftLn := m.cm.Match(marked(RaftMarker))
	forwardLn := m.cm.Match(marked(ForwardMarker))
	// Everything that is not raft is HTTP: the HTTP server itself answers
	// methods cmux's matcher does not know (PATCH, ...) with 405, and
	// garbage with 400.
	httpLn := m.cm.Match(cmux.Any())
	m.wg.Add(4)
	go func() { defer m.wg.Done(); _ = m.cm.Serve() }()
	go func() { defer m.wg.Done(); m.pump(raftLn, m.raft.childListener, m.consumeMarker(RaftMarker)) }()
	go func() { defer m.wg.Done(); m.pump(forwardLn, m.forward, m.consumeMarker(ForwardMarker)) }()
	go func() { defer m.wg.Done(); m.pump(httpLn, m.http, nil) }()
	return m, nil
}

// Listen opens a TCP listener on bind and serves it.
func Listen(bind string, opts Options) (*Mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("mux: listen on %s: %w", bind, err)
	}
	m, err := New(ln, opts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return m, nil
}

// Addr is the advertised address.
func (m *Mux) Addr() net.Addr { return m.advertise }

// RaftLayer is the raft.StreamLayer for raft.NewNetworkTransport.
func (m *Mux) RaftLayer() *RaftLayer { return m.raft }

// HTTPListener is the listener for the HTTP server.
func (m *Mux) HTTPListener() net.Listener { return m.http }

// ForwardListener is the listener for forwarding streams from peers.
func (m *Mux) ForwardListener() net.Listener { return m.forward }

// DialForward opens a forwarding stream to a peer's shared port. With TLS
// it presents this node's certificate, as raft does.
func (m *Mux) DialForward(ctx context.Context, addr string) (net.Conn, error) {
	deadline, _ := ctx.Deadline()
	return m.dialMarked(ctx, addr, ProtoForward, ForwardMarker, deadline)
}

// dialMarked opens a connection for one of the port's own streams: over
// TLS it asks for proto by ALPN; in plaintext it writes marker first, by
// writeDeadline if not zero.
func (m *Mux) dialMarked(ctx context.Context, addr, proto string, marker byte, writeDeadline time.Time) (net.Conn, error) {
	if m.tls != nil {
		return m.dial(ctx, "tcp", addr, proto)
	}
	c, err := m.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteDeadline(writeDeadline)
	if _, err := c.Write([]byte{marker}); err != nil {
		c.Close()
		return nil, fmt.Errorf("mux: write %s marker to %s: %w", proto, addr, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// Close stops accepting on the port and closes both sides. Connections
// already handed out are their owners' to close.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		err = m.root.Close()
		if m.cm != nil {
			m.cm.Close()
		}
		m.raft.Close()
		m.http.Close()
		m.forward.Close()
		m.wg.Wait()
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("mux: close: %w", err)
	}
	return nil
}

// pump moves matched connections from a cmux listener to ours, running
// prepare (if any) on each in its own goroutine so a slow connection does
// not hold up the others.
func (m *Mux) pump(from net.Listener, to *childListener, prepare func(net.Conn) error) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := from.Accept()
		if err != nil {
			return
		}
		if prepare == nil {
			to.deliver(c)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := prepare(c); err != nil {
				m.logger.Debug("mux: dropping a marked connection", "remote", c.RemoteAddr(), "err", err)
				c.Close()
				return
			}
			to.deliver(c)
		}()
	}
}

func advertiseAddr(bound net.Addr, advertise string) (net.Addr, error) {
	if advertise == "" {
		tcp, ok := bound.(*net.TCPAddr)
		if ok && tcp.IP.IsUnspecified() {
			return nil, fmt.Errorf("mux: listening on %s: an advertise address is required (0.0.0.0 is not reachable)", bound)
		}
		return bound, nil
	}
	a, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("mux: advertise address %q: %w", advertise, err)
	}
	if a.IP == nil || a.IP.IsUnspecified() || a.Port == 0 {
		return nil, fmt.Errorf("mux: advertise address %q must name a reachable host and port", advertise)
	}
	return a, nil
}

// childListener hands out connections until its own Close, which leaves
// the root listener alone.
type childListener struct {
	addr      net.Addr
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newChild(addr net.Addr) *childListener {
	return &childListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *childListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *childListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *childListener) Addr() net.Addr { return l.addr }

// deliver blocks until Accept takes c, or closes c if the listener closes.
func (l *childListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// RaftLayer implements raft.StreamLayer over the shared port.
type RaftLayer struct {
	*childListener
	sniffTimeout time.Duration
	mux          *Mux
}

var _ raft.StreamLayer = (*RaftLayer)(nil)

// Dial opens a raft connection to a peer's shared port.
func (l *RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	var writeDeadline time.Time
	if timeout > 0 {
		writeDeadline = time.Now().Add(timeout)
	}
	return l.mux.dialMarked(ctx, string(address), ProtoRaft, RaftMarker, writeDeadline)
}

// consumeMarker strips the marker byte that cmux replays after matching.
func (m *Mux) consumeMarker(marker byte) func(net.Conn) error {
	return func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(m.raft.sniffTimeout))
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		if b[0] != marker {
			return fmt.Errorf("bad marker byte %#x", b[0])
		}
		return c.SetReadDeadline(time.Time{})
	}
}
