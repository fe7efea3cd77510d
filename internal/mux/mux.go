package mux

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
)

// RaftMarker is the first byte of every raft connection. HTTP requests start
// with an ASCII method name and TLS with 0x16, so 0x01 cannot be confused
// with either.
const RaftMarker byte = 0x01

// ForwardMarker is the first byte of every forwarding stream (writes a
// follower sends its leader; package fwdstream).
const ForwardMarker byte = 0x02

// GroupRaftMarker starts the raft connection of a group other than group 0:
// the group's ID follows as a uvarint, then raft's own stream. Group 0 (a
// node's first group) keeps RaftMarker, which is how nodes of releases
// before groups existed dial, so that they and newer nodes still talk
// during a rolling upgrade.
const GroupRaftMarker byte = 0x03

// DefaultSniffTimeout bounds how long a new connection may take to send the
// bytes that tell raft from HTTP.
const DefaultSniffTimeout = 5 * time.Second

// Mux serves one listener to raft and HTTP.
type Mux struct {
	root         net.Listener
	sniffTimeout time.Duration
	cm           cmux.CMux
	advertise    net.Addr
	logger       *slog.Logger

	raft    raftGroups
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
	m := &Mux{root: ln, advertise: advertise, logger: opts.Logger, tls: opts.TLS, sniffTimeout: opts.SniffTimeout}
	m.raft = raftGroups{layers: map[uint64]*RaftLayer{}}
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
	groupRaftLn := m.cm.Match(marked(GroupRaftMarker))
	forwardLn := m.cm.Match(marked(ForwardMarker))
	// Everything that is not raft is HTTP: the HTTP server itself answers
	// methods cmux's matcher does not know (PATCH, ...) with 405, and
	// garbage with 400.
	httpLn := m.cm.Match(cmux.Any())
	m.wg.Add(5)
	go func() { defer m.wg.Done(); _ = m.cm.Serve() }()
	go func() { defer m.wg.Done(); m.pump(raftLn, m.raftGroupZero(RaftMarker)) }()
	go func() { defer m.wg.Done(); m.pump(groupRaftLn, m.raftGroupNamed(GroupRaftMarker)) }()
	go func() { defer m.wg.Done(); m.pump(forwardLn, m.marked(ForwardMarker, m.forward)) }()
	go func() { defer m.wg.Done(); m.pump(httpLn, func(c net.Conn) { m.http.deliver(c) }) }()
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

// RaftLayer is the raft.StreamLayer of one raft group, for
// raft.NewNetworkTransport: connections peers open for that group arrive
// here, and its Dial opens them. One layer per group at a time; closing it
// (raft's transport does on shutdown) frees the group's ID again.
func (m *Mux) RaftLayer(group uint64) (*RaftLayer, error) {
	return m.raft.open(m, group)
}

// ReserveRaftLayer makes group's layer before anyone asks for it: its
// connections wait until RaftLayer hands it out (a node that is starting
// its groups must not turn their peers away).
func (m *Mux) ReserveRaftLayer(group uint64) { m.raft.reserve(m, group) }

// OnUnknownRaftGroup sets what hears of a raft connection for a group
// this node does not run. If fn returns true (it is starting the group;
// it must not block), the connection waits for the group's layer as for
// a reserved one; else it is closed. Call it before Serve.
func (m *Mux) OnUnknownRaftGroup(fn func(group uint64) bool) {
	m.raft.mu.Lock()
	m.raft.unknown = fn
	m.raft.mu.Unlock()
}

// UnreserveRaftLayer undoes a reservation nobody claimed (a group that
// failed to start): the connections waiting for it are closed.
func (m *Mux) UnreserveRaftLayer(group uint64) { m.raft.unreserve(group) }

// HTTPListener is the listener for the HTTP server.
func (m *Mux) HTTPListener() net.Listener { return m.http }

// ForwardListener is the listener for forwarding streams from peers.
func (m *Mux) ForwardListener() net.Listener { return m.forward }

// DialForward opens a forwarding stream to a peer's shared port. With TLS
// it presents this node's certificate, as raft does.
func (m *Mux) DialForward(ctx context.Context, addr string) (net.Conn, error) {
	deadline, _ := ctx.Deadline()
	return m.dialStream(ctx, addr, ProtoForward, ForwardMarker, nil, deadline)
}

// dialStream opens a connection for one of the port's own streams: over
// TLS it asks for proto by ALPN, in plaintext it writes marker first; then
// it writes header (if any), by writeDeadline if not zero.
func (m *Mux) dialStream(ctx context.Context, addr, proto string, marker byte, header []byte, writeDeadline time.Time) (net.Conn, error) {
	var c net.Conn
	var err error
	if m.tls != nil {
		c, err = m.dial(ctx, "tcp", addr, proto)
	} else {
		c, err = m.DialContext(ctx, "tcp", addr)
		header = append([]byte{marker}, header...)
	}
	if err != nil || len(header) == 0 {
		return c, err
	}
	_ = c.SetWriteDeadline(writeDeadline)
	if _, err := c.Write(header); err != nil {
		c.Close()
		return nil, fmt.Errorf("mux: open %s stream to %s: %w", proto, addr, err)
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
		m.raft.closeAll()
		m.http.Close()
		m.forward.Close()
		m.wg.Wait()
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("mux: close: %w", err)
	}
	return nil
}

// pump moves matched connections from a cmux listener to their side, each
// handed over in its own goroutine so that a slow connection (one still
// sending its marker) does not hold up the others.
func (m *Mux) pump(from net.Listener, hand func(net.Conn)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := from.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); hand(c) }()
	}
}

// drop closes a connection that could not be handed over.
func (m *Mux) drop(c net.Conn, err error) {
	m.logger.Debug("mux: dropping a connection", "remote", c.RemoteAddr(), "err", err)
	c.Close()
}

// marked strips marker (cmux replays what it matched on) and delivers the
// connection to l.
func (m *Mux) marked(marker byte, l *childListener) func(net.Conn) {
	return func(c net.Conn) {
		if err := m.consumeMarker(c, marker); err != nil {
			m.drop(c, err)
			return
		}
		l.deliver(c)
	}
}

// raftGroupZero hands a connection that carries no group ID to group 0.
func (m *Mux) raftGroupZero(marker byte) func(net.Conn) {
	return func(c net.Conn) {
		if err := m.consumeMarker(c, marker); err != nil {
			m.drop(c, err)
			return
		}
		m.raft.deliver(m, c, 0)
	}
}

// raftGroupNamed reads the group ID after the marker and hands the
// connection to that group.
func (m *Mux) raftGroupNamed(marker byte) func(net.Conn) {
	return func(c net.Conn) {
		err := m.consumeMarker(c, marker)
		var group uint64
		if err == nil {
			group, err = m.readGroup(c)
		}
		if err != nil {
			m.drop(c, err)
			return
		}
		m.raft.deliver(m, c, group)
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

// consumeMarker strips the marker byte that cmux replays after matching.
func (m *Mux) consumeMarker(c net.Conn, marker byte) error {
	_ = c.SetReadDeadline(time.Now().Add(m.sniffTimeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0] != marker {
		return fmt.Errorf("bad marker byte %#x", b[0])
	}
	return c.SetReadDeadline(time.Time{})
}

// readGroup reads the uvarint group ID a grouped raft connection starts
// with, byte by byte (what follows is raft's, and must stay unread).
func (m *Mux) readGroup(c net.Conn) (uint64, error) {
	_ = c.SetReadDeadline(time.Now().Add(m.sniffTimeout))
	var buf [binary.MaxVarintLen64]byte
	for i := range buf {
		if _, err := io.ReadFull(c, buf[i:i+1]); err != nil {
			return 0, fmt.Errorf("read group ID: %w", err)
		}
		if buf[i] < 0x80 {
			group, n := binary.Uvarint(buf[:i+1])
			if n <= 0 {
				return 0, errors.New("bad group ID")
			}
			return group, c.SetReadDeadline(time.Time{})
		}
	}
	return 0, errors.New("group ID too long")
}
