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

// serveNode runs a raft transport answering every RPC and an HTTP server
// answering "pong" on m.
func serveNode(t *testing.T, m *Mux) *node {
	t.Helper()
	n := &node{mux: m}
	n.trans = raft.NewNetworkTransport(m.RaftLayer(), 3, 2*time.Second, io.Discard)
	n.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong")
	}), ReadHeaderTimeout: 2 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); n.srv.Serve(m.HTTPListener()) }()
	stop, answered := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-answered
		n.trans.CloseStreams() // pooled outgoing connections: the peer's handlers end
		n.trans.Close()
		n.srv.Close()
		m.Close()
		<-served
	})
	// Answer every raft RPC this node receives (the transport never closes
	// its consumer channel, hence stop).
	go func() {
		defer close(answered)
		for {
			select {
			case rpc := <-n.trans.Consumer():
				rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	return n
}

func appendEntries(from, to *node) error {
	var resp raft.AppendEntriesResponse
	err := from.trans.AppendEntries("peer", raft.ServerAddress(to.mux.Addr().String()), &raft.AppendEntriesRequest{Term: 7}, &resp)
	if err == nil && (!resp.Success || resp.Term != 7) {
		return io.ErrUnexpectedEOF
	}
	return err
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
	if m.RaftLayer().Addr().String() != "127.0.0.1:7000" {
		t.Fatalf("raft layer Addr = %s", m.RaftLayer().Addr())
	}
}
