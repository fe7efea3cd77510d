package mux

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type node struct {
	mux   *Mux
	trans *raft.NetworkTransport
	srv   *http.Server
}

func startNode(t *testing.T) *node {
	t.Helper()
	m, err := Listen("127.0.0.1:0", Options{SniffTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return serveNode(t, m)
}

// serveNode runs group 0's raft transport, answering every RPC with term
// 7, and an HTTP server answering "pong" on m.
func serveNode(t *testing.T, m *Mux) *node {
	t.Helper()
	n := &node{mux: m}
	n.trans = serveGroup(t, m, 0, 7)
	n.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong")
	}), ReadHeaderTimeout: 2 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); n.srv.Serve(m.HTTPListener()) }()
	t.Cleanup(func() {
		n.srv.Close()
		m.Close()
		<-served
	})
	return n
}

// serveGroup runs a raft transport for group on m that answers every RPC
// with term.
func serveGroup(t *testing.T, m *Mux, group, term uint64) *raft.NetworkTransport {
	t.Helper()
	layer, err := m.RaftLayer(group)
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(layer, 3, 2*time.Second, io.Discard)
	stop, answered := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-answered
		trans.CloseStreams() // pooled outgoing connections: the peer's handlers end
		trans.Close()
	})
	// Answer every raft RPC (the transport never closes its consumer
	// channel, hence stop).
	go func() {
		defer close(answered)
		for {
			select {
			case rpc := <-trans.Consumer():
				rpc.Respond(&raft.AppendEntriesResponse{Term: term, Success: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	return trans
}

func appendEntries(from, to *node) error {
	_, err := appendEntriesTerm(from.trans, to)
	return err
}

// appendEntriesTerm sends an AppendEntries on trans to to's port and
// returns the term that answered (which tells the group that did).
func appendEntriesTerm(trans *raft.NetworkTransport, to *node) (uint64, error) {
	var resp raft.AppendEntriesResponse
	err := trans.AppendEntries("peer", raft.ServerAddress(to.mux.Addr().String()), &raft.AppendEntriesRequest{Term: 7}, &resp)
	if err == nil && !resp.Success {
		return 0, io.ErrUnexpectedEOF
	}
	return resp.Term, err
}

func httpGet(n *node) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + n.mux.Addr().String() + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && string(b) != "pong" {
		return io.ErrUnexpectedEOF
	}
	return err
}

func TestRaftAndHTTPShareOnePort(t *testing.T) {
	a, b := startNode(t), startNode(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 50; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- appendEntries(a, b) }()
		go func() { defer wg.Done(); errs <- httpGet(b) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestClosingRaftLeavesHTTPServing(t *testing.T) {
	a, b := startNode(t), startNode(t)
	if err := appendEntries(a, b); err != nil {
		t.Fatal(err)
	}
	if err := b.trans.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.mux.RaftLayer(0); err != nil {
		t.Fatalf("group 0's layer not freed by its transport's Close: %v", err)
	}
	if err := httpGet(b); err != nil {
		t.Fatalf("HTTP after closing raft: %v", err)
	}
	// New raft connections to b are dropped, not served.
	a2 := startNode(t)
	if err := appendEntries(a2, b); err == nil {
		t.Fatal("raft RPC succeeded after the raft side was closed")
	}
	// And the reverse: closing HTTP leaves raft working.
	c := startNode(t)
	c.srv.Close()
	if err := appendEntries(a, c); err != nil {
		t.Fatalf("raft after closing HTTP: %v", err)
	}
}

func TestBadConnectionsAreDropped(t *testing.T) {
	n := startNode(t)
	addr := n.mux.Addr().String()
	// Garbage and a silent client: both closed (the garbage after a 400 from
	// the HTTP server, the silent one after the sniff and header
	// timeouts), neither blocks others.
	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	garbage.Write([]byte("\x16\x03garbage-not-http\r\n\r\n"))
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := httpGet(n); err != nil {
		t.Fatalf("HTTP while bad clients are connected: %v", err)
	}
	for _, c := range []net.Conn{garbage, silent} {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("bad connection not closed: %v", err)
		}
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400") {
			t.Fatalf("bad connection answered %q", b)
		}
	}
}

func TestAdvertiseAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := New(ln, Options{}); err == nil {
		t.Fatal("0.0.0.0 accepted as advertise address")
	}
	if _, err := New(ln, Options{Advertise: "0.0.0.0:7000"}); err == nil {
		t.Fatal("explicit 0.0.0.0 advertise accepted")
	}
	m, err := New(ln, Options{Advertise: "127.0.0.1:7000"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	layer, err := m.RaftLayer(0)
	if err != nil {
		t.Fatal(err)
	}
	if layer.Addr().String() != "127.0.0.1:7000" {
		t.Fatalf("raft layer Addr = %s", layer.Addr())
	}
}

// Several raft groups share the port: each group's connections reach that
// group's transport only, a connection for a group the node does not run
// is closed, and group 0 is reached by the marker of releases before
// groups (no group ID), so that older nodes still talk to newer ones.
func TestRaftGroupsShareOnePort(t *testing.T) {
	testRaftGroups(t, startNode)
}

func testRaftGroups(t *testing.T, start func(*testing.T) *node) {
	a, b := start(t), start(t)
	serveGroup(t, b.mux, 5, 50)
	serveGroup(t, b.mux, 1<<40, 60) // a multi-byte uvarint
	if _, err := b.mux.RaftLayer(5); err == nil {
		t.Fatal("a second layer for group 5 was handed out")
	}
	for _, c := range []struct {
		group, term uint64
	}{{0, 7}, {5, 50}, {1 << 40, 60}} {
		trans := a.trans
		if c.group != 0 {
			trans = serveGroup(t, a.mux, c.group, 0)
		}
		term, err := appendEntriesTerm(trans, b)
		if err != nil || term != c.term {
			t.Fatalf("group %d: answered by term %d (%v), want %d", c.group, term, err, c.term)
		}
	}
	if _, err := appendEntriesTerm(serveGroup(t, a.mux, 9, 0), b); err == nil {
		t.Fatal("an RPC for a group b does not run was answered")
	}
}

// A peer of a release before groups opens group 0's connections with the
// bare marker and nothing else.
func TestRaftGroupZeroLegacyMarker(t *testing.T) {
	b := startNode(t)
	c, err := net.Dial("tcp", b.mux.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{RaftMarker}); err != nil {
		t.Fatal(err)
	}
	legacy := raft.NewNetworkTransport(&fixedConnLayer{conn: c, closed: make(chan struct{})}, 1, 2*time.Second, io.Discard)
	defer legacy.Close()
	var resp raft.AppendEntriesResponse
	if err := legacy.AppendEntries("peer", "b", &raft.AppendEntriesRequest{Term: 7}, &resp); err != nil || resp.Term != 7 {
		t.Fatalf("legacy group-0 connection: term %d, %v", resp.Term, err)
	}
}

// fixedConnLayer dials one connection that is already open (and marked).
type fixedConnLayer struct {
	conn   net.Conn
	used   bool
	closed chan struct{}
}

func (l *fixedConnLayer) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	if l.used {
		return nil, io.EOF
	}
	l.used = true
	return l.conn, nil
}
func (l *fixedConnLayer) Accept() (net.Conn, error) { <-l.closed; return nil, net.ErrClosed }
func (l *fixedConnLayer) Close() error              { close(l.closed); return nil }
func (l *fixedConnLayer) Addr() net.Addr            { return l.conn.LocalAddr() }

// A reserved group's connections wait for its transport instead of being
// turned away (a node starting its groups); an unreserved group's are
// closed at once.
func TestReservedGroupWaits(t *testing.T) {
	m, err := Listen("127.0.0.1:0", Options{SniffTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m.ReserveRaftLayer(4)
	b := serveNode(t, m)
	open := func(group byte) net.Conn {
		c, err := net.Dial("tcp", b.mux.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte{GroupRaftMarker, group}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	kept, dropped := open(4), open(6)
	dropped.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := dropped.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection for a group the node does not run: %v, want it closed", err)
	}
	kept.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := kept.Read(make([]byte, 1)); err == io.EOF {
		t.Fatal("a connection for a reserved group was closed")
	}
	// Its transport starts now, and a call reaches it.
	serveGroup(t, b.mux, 4, 40)
	term, err := appendEntriesTerm(serveGroup(t, startNode(t).mux, 4, 0), b)
	if err != nil || term != 40 {
		t.Fatalf("the reserved group once served: term %d, %v", term, err)
	}
}
