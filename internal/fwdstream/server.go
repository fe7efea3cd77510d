package fwdstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// Node is what the server needs of the node it runs on.
type Node interface {
	// ApplyForwarded proposes a write sent by another node to the raft
	// group it names (the command in the state machine's encoding, checked
	// by the group), or refuses with kv.ErrNoLeader when this node does not
	// lead that group.
	ApplyForwarded(ctx context.Context, group, generation uint64, command []byte) (*kv.Result, error)
	// MaxCommandBytes bounds a forwarded command's size.
	MaxCommandBytes() int
	// AuthorizePeer: may the other end (its TLS state, nil without TLS,
	// and the secret of its hello) forward writes here?
	AuthorizePeer(state *tls.ConnectionState, secret string) error
	// AuthGeneration changes whenever an earlier AuthorizePeer answer may
	// have changed (membership, ACL state, a restore): streams are checked
	// again then.
	AuthGeneration() [2]uint64
}

// helloTimeout bounds how long a new connection may take to say hello.
const helloTimeout = 5 * time.Second

// Server answers the streams of the peers.
type Server struct {
	node      Node
	fallback  time.Duration // a request's time limit when its caller sent none
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
}

// NewServer returns a server for node; requests without a time limit of
// their caller's get fallback.
func NewServer(node Node, fallback time.Duration) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{node: node, fallback: fallback, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
}

// Serve accepts streams on ln until it or the server closes.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return net.ErrClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, ends every stream (requests in flight are
// cancelled: their callers learn the outcome is unknown) and waits.
func (s *Server) Close() {
	s.mu.Lock()
	s.cancel()
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// serve runs one stream: hello, then requests, each applied in its own
// goroutine, answers coalesced by one writer.
func (s *Server) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(helloTimeout))
	var pre [len(preamble)]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil || string(pre[:]) != preamble {
		return
	}
	kind, body, err := readFrame(r, 1<<16)
	if err != nil || kind != kindHello {
		return
	}
	cur := cursor{b: body}
	peerVersion := cur.uvarint()
	if cur.err != nil || (peerVersion != version && peerVersion != versionGrouped && peerVersion != versionUngrouped) {
		s.ack(c, kv.Code(kv.ErrInvalid), fmt.Sprintf("unsupported forwarding protocol version %d", peerVersion))
		return
	}
	secret := string(cur.rest())
	state := tlsState(c)
	gen := s.node.AuthGeneration()
	if err := s.node.AuthorizePeer(state, secret); err != nil {
		s.ack(c, kv.Code(err), err.Error())
		return
	}
	if err := s.ack(c, "", ""); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	out := make(chan []byte, 256)
	var requests sync.WaitGroup
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeAnswers(c, out, ctx.Done())
	}()
	defer func() {
		// The stream is over (the caller hung up, or sent garbage): no
		// answer will be read, and closing first unblocks a writer stuck
		// on a peer that vanished.
		cancel()
		c.Close()
		requests.Wait()
		close(out)
		<-writerDone
	}()

	limit := s.node.MaxCommandBytes() + 64
	for {
		kind, body, err := readFrame(r, limit)
		if err != nil || kind != kindRequest {
			return
		}
		cur := cursor{b: body}
		id, timeout := cur.uvarint(), cur.uvarint()
		var group, generation uint64
		if peerVersion != versionUngrouped {
			group = cur.uvarint()
		}
		if peerVersion == version {
			generation = cur.uvarint()
		}
		encoded := cur.rest()
		if cur.err != nil {
			return
		}
		// Membership or ACL state changed since the peer was let in:
		// let it in again only if it still may.
		if g := s.node.AuthGeneration(); g != gen {
			if err := s.node.AuthorizePeer(state, secret); err != nil {
				// Refused at the door: nothing was done, as the caller
				// must know (it may try elsewhere).
				respond(out, ctx.Done(), id, refusedCode, []byte(err.Error()))
				continue
			}
			gen = g
		}
		requests.Add(1)
		go func() {
			defer requests.Done()
			res, err := s.apply(ctx, group, generation, encoded, timeout)
			answer(out, ctx.Done(), id, res, err)
		}()
	}
}

func (s *Server) apply(ctx context.Context, group, generation uint64, encoded []byte, timeoutMs uint64) (*kv.Result, error) {
	d := s.fallback
	if timeoutMs > 0 {
		d = time.Duration(timeoutMs) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return s.node.ApplyForwarded(ctx, group, generation, encoded)
}

// answer queues the answer to request id: its result, or its error by
// wire code.
func answer(out chan<- []byte, done <-chan struct{}, id uint64, res *kv.Result, err error) {
	if err != nil {
		respond(out, done, id, kv.Code(err), []byte(err.Error()))
		return
	}
	respond(out, done, id, "", fsm.EncodeResult(res))
}

// respond queues a response frame, unless the stream ends first.
func respond(out chan<- []byte, done <-chan struct{}, id uint64, code string, body []byte) {
	frame := appendFrame(nil, kindResponse, uvarint(id), appendStr(nil, code), body)
	select {
	case out <- frame:
	case <-done:
	}
}

// writeAnswers writes answers, as many per socket write as are waiting,
// until out closes or the stream ends.
func (s *Server) writeAnswers(c net.Conn, out <-chan []byte, done <-chan struct{}) {
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		var frame []byte
		var ok bool
		select {
		case frame, ok = <-out:
			if !ok {
				return
			}
		case <-done:
			return
		}
		for frame != nil {
			if _, err := w.Write(frame); err != nil {
				c.Close() // the reader ends, and with it the stream
				return
			}
			select {
			case frame = <-out:
			default:
				frame = nil
			}
		}
		if err := w.Flush(); err != nil {
			c.Close()
			return
		}
	}
}

func (s *Server) ack(c net.Conn, code, msg string) error {
	_ = c.SetWriteDeadline(time.Now().Add(helloTimeout))
	defer c.SetWriteDeadline(time.Time{})
	b := append([]byte(magic), appendFrame(nil, kindAck, appendStr(nil, code), []byte(msg))...)
	_, err := c.Write(b)
	return err
}

// tlsState is the connection's TLS state, nil if it is not TLS.
func tlsState(c net.Conn) *tls.ConnectionState {
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}
