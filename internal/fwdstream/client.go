package fwdstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// ErrUnavailable: no stream to that peer could be set up (it does not
// speak the protocol, refused this node, or could not be reached).
// Nothing was sent; use the HTTP call.
var ErrUnavailable = errors.New("forwarding stream unavailable")

// retryAfter is how long a peer that could not take a stream is left to
// the HTTP path before the next attempt: long enough not to dial twice per
// write to a peer that is down or too old, short enough that the stream
// is back soon after the peer is.
const retryAfter = 2 * time.Second

// silentTooLong: a caller that times out on a write the peer has said
// nothing since, for this long, closes the stream (see stream.lastRead).
const silentTooLong = time.Second

// setupTimeout bounds dialling and the hello, whatever the first caller's
// own time limit: a peer that cannot take a stream must not hold writes
// that the HTTP path could carry.
const setupTimeout = time.Second

// maxResponseBytes bounds an answer (a transaction's reads can carry many
// values); the peer is an authenticated member, this is only a sanity
// bound.
const maxResponseBytes = 1 << 30

// Client keeps one stream per peer address.
type Client struct {
	dial   func(ctx context.Context, addr string) (net.Conn, error)
	secret func() string
	now    func() time.Time // the clock of the silent-stream check

	mu      sync.Mutex
	streams map[string]*stream   // the one new calls to an address use
	open    map[*stream]struct{} // every stream not yet ended (retired ones too)
	failed  map[string]time.Time // address → when setting up a stream last failed
	closed  bool
}

// NewClient dials with dial (the node's mux) and presents secret() in its
// hello.
func NewClient(dial func(ctx context.Context, addr string) (net.Conn, error), secret func() string) *Client {
	return &Client{dial: dial, secret: secret, now: time.Now, streams: map[string]*stream{}, open: map[*stream]struct{}{}, failed: map[string]time.Time{}}
}

// Close ends every stream; calls in flight fail.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	streams := map[*stream]struct{}{}
	for _, s := range c.streams { // opening ones included
		streams[s] = struct{}{}
	}
	for s := range c.open {
		streams[s] = struct{}{}
	}
	c.mu.Unlock()
	for s := range streams {
		s.fail(fmt.Errorf("%w: closing", kv.ErrClosed))
		<-s.done
	}
}

// Apply forwards a command (in the state machine's encoding) to the leader
// of group at addr, with the range's generation as this node knows it.
// ErrUnavailable (nothing sent) means: use the HTTP call.
func (c *Client) Apply(ctx context.Context, addr string, group, generation uint64, command []byte) (*kv.Result, error) {
	s, err := c.stream(ctx, addr)
	if err != nil {
		return nil, err
	}
	return s.call(ctx, group, generation, command)
}

// stream returns the open stream to addr, setting one up if there is none.
// Callers racing to set up the first one wait for the same attempt.
func (c *Client) stream(ctx context.Context, addr string) (*stream, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: closing", kv.ErrClosed)
	}
	if s := c.streams[addr]; s != nil && !s.hasEnded() && !s.retired.Load() {
		c.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
		if s.setupErr != nil {
			return nil, s.setupErr
		}
		return s, nil
	}
	if t, ok := c.failed[addr]; ok && time.Since(t) < retryAfter {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %s could not take one %s ago", ErrUnavailable, addr, time.Since(t).Round(time.Millisecond))
	}
	s := newStream(addr, c.now)
	c.streams[addr] = s
	c.mu.Unlock()

	err := s.open(ctx, c.dial, c.secret())
	c.mu.Lock()
	if err != nil {
		if ctx.Err() == nil { // the peer's failure, not a caller that gave up
			c.failed[addr] = time.Now()
		}
		delete(c.streams, addr)
	} else {
		delete(c.failed, addr)
		c.open[s] = struct{}{}
		// Once it ends, the next call sets up a new one.
		go func() {
			<-s.done
			c.mu.Lock()
			if c.streams[addr] == s {
				delete(c.streams, addr)
			}
			delete(c.open, s)
			c.mu.Unlock()
		}()
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// A request moves from queued to sent (the writer took it) or abandoned
// (its caller gave up first), never both: an abandoned request is never
// written, so its caller may report that nothing was done.
const (
	queued int32 = iota
	sent
	abandoned
)

type request struct {
	id     uint64
	frame  []byte
	state  atomic.Int32
	sentAt atomic.Int64 // unix ns, when the writer took it
	reply  chan reply   // buffered: the reader never waits for the caller
}

type reply struct {
	res *kv.Result
	err error
}

// stream is one connection to a peer and the requests in flight on it.
type stream struct {
	addr     string
	now      func() time.Time
	ready    chan struct{} // closed once open returned
	setupErr error
	conn     net.Conn
	queue    chan *request
	done     chan struct{} // closed when both goroutines have ended

	// retired: the peer refused a request as not from a member (its view
	// of the membership or of the peer secret changed since the hello).
	// New calls open a new stream, with a new hello; this one ends once
	// its requests in flight are answered.
	retired atomic.Bool

	mu      sync.Mutex
	pending map[uint64]*request
	nextID  uint64
	// lastRead is when the peer last sent anything (unix ns): a stream
	// that has answered nothing for a while when a caller times out is
	// taken for a dead connection (a black-holed peer can leave TCP
	// retransmitting for minutes) and closed, so the next call dials anew.
	lastRead atomic.Int64
	err      error         // why the stream ended, once it has
	ended    chan struct{} // closed when err is set
}

func newStream(addr string, now func() time.Time) *stream {
	return &stream{addr: addr, now: now, ready: make(chan struct{}), done: make(chan struct{}),
		queue: make(chan *request, 1024), pending: map[uint64]*request{}, ended: make(chan struct{})}
}

// open dials, says hello and waits for the peer's acceptance; any failure
// is ErrUnavailable (the hello carries no write).
func (s *stream) open(ctx context.Context, dial func(context.Context, string) (net.Conn, error), secret string) (err error) {
	defer func() {
		if err != nil {
			s.setupErr = err
			close(s.done)
		}
		close(s.ready)
	}()
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	conn, err := dial(ctx, s.addr)
	if err != nil {
		return fmt.Errorf("%w: dial %s: %v", ErrUnavailable, s.addr, err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	hello := append([]byte(preamble), appendFrame(nil, kindHello, uvarint(version), []byte(secret))...)
	if _, err := conn.Write(hello); err != nil {
		conn.Close()
		return fmt.Errorf("%w: hello to %s: %v", ErrUnavailable, s.addr, err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	var m [len(magic)]byte
	if _, err := io.ReadFull(r, m[:]); err != nil || string(m[:]) != magic {
		conn.Close()
		return fmt.Errorf("%w: %s does not speak the forwarding protocol (%v)", ErrUnavailable, s.addr, err)
	}
	kind, body, err := readFrame(r, 1<<16)
	if err != nil || kind != kindAck {
		conn.Close()
		return fmt.Errorf("%w: no acceptance from %s (%v)", ErrUnavailable, s.addr, err)
	}
	cur := cursor{b: body}
	code, msg := cur.str(), string(cur.rest())
	if cur.err != nil || code != "" {
		conn.Close()
		return fmt.Errorf("%w: %s refused the stream: %s %s", ErrUnavailable, s.addr, code, msg)
	}
	_ = conn.SetDeadline(time.Time{})
	s.mu.Lock()
	s.conn = conn
	closed := s.err != nil // the client closed while this stream was opening
	s.mu.Unlock()
	if closed {
		conn.Close()
	}
	s.lastRead.Store(s.now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.write() }()
	go func() { defer wg.Done(); s.read(r) }()
	go func() { wg.Wait(); close(s.done) }()
	return nil
}

// call sends one command and waits for its answer.
func (s *stream) call(ctx context.Context, group, generation uint64, command []byte) (*kv.Result, error) {
	timeout := uint64(0)
	if d, ok := ctx.Deadline(); ok {
		timeout = uint64(max(time.Until(d).Milliseconds(), 1))
	}
	req := &request{reply: make(chan reply, 1)}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: stream to %s: %v", kv.ErrNoLeader, s.addr, err)
	}
	s.nextID++
	req.id = s.nextID
	s.pending[req.id] = req
	s.mu.Unlock()
	req.frame = appendFrame(nil, kindRequest, uvarint(req.id), uvarint(timeout), uvarint(group), uvarint(generation), command)

	select {
	case s.queue <- req:
	case <-s.ended:
		s.forget(req.id)
		return nil, fmt.Errorf("%w: stream to %s ended: %v", kv.ErrNoLeader, s.addr, s.endErr())
	case <-ctx.Done():
		s.forget(req.id)
		return nil, fmt.Errorf("%w: %v", kv.ErrNoLeader, ctx.Err())
	}
	select {
	case r := <-req.reply:
		return r.res, r.err
	case <-ctx.Done():
		s.forget(req.id)
		if req.state.CompareAndSwap(queued, abandoned) {
			return nil, fmt.Errorf("%w: not sent to %s: %v", kv.ErrNoLeader, s.addr, ctx.Err())
		}
		// Silence since this write was sent, not since the last answer:
		// a caller with a short deadline on an idle stream proves nothing.
		heard := max(s.lastRead.Load(), req.sentAt.Load())
		if silent := s.now().Sub(time.Unix(0, heard)); silent > silentTooLong {
			s.fail(fmt.Errorf("nothing from the peer for %s", silent.Round(time.Millisecond)))
		}
		return nil, fmt.Errorf("%w: sent to %s, no answer: %v", kv.ErrUnknownOutcome, s.addr, ctx.Err())
	}
}

// hasEnded: the stream was open and has failed since (its replacement
// may be set up).
func (s *stream) hasEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

func (s *stream) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *stream) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// write sends queued requests, as many per socket write as are waiting.
func (s *stream) write() {
	w := bufio.NewWriterSize(s.conn, 64<<10)
	for {
		var req *request
		select {
		case req = <-s.queue:
		case <-s.ended:
			return
		}
		for req != nil {
			if req.state.CompareAndSwap(queued, sent) {
				req.sentAt.Store(s.now().UnixNano())
				if _, err := w.Write(req.frame); err != nil {
					s.fail(fmt.Errorf("write: %w", err))
					return
				}
			}
			select {
			case req = <-s.queue:
			default:
				req = nil
			}
		}
		if err := w.Flush(); err != nil {
			s.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// read delivers responses to their callers.
func (s *stream) read(r *bufio.Reader) {
	for {
		kind, body, err := readFrame(r, maxResponseBytes)
		if err != nil {
			s.fail(fmt.Errorf("read: %w", err))
			return
		}
		s.lastRead.Store(time.Now().UnixNano())
		cur := cursor{b: body}
		id := cur.uvarint()
		code := cur.str()
		payload := cur.rest()
		if kind != kindResponse || cur.err != nil {
			s.fail(fmt.Errorf("read: %w (kind %q)", errMalformed, kind))
			return
		}
		if code == refusedCode {
			s.retired.Store(true)
		}
		s.mu.Lock()
		req := s.pending[id]
		delete(s.pending, id)
		idle := len(s.pending) == 0
		s.mu.Unlock()
		if req != nil { // else its caller gave up
			req.reply <- decodeReply(s.addr, code, payload)
		}
		if idle && s.retired.Load() {
			s.fail(errors.New("retired: the peer asked for a new hello"))
			return
		}
	}
}

func decodeReply(addr, code string, payload []byte) reply {
	if code == refusedCode {
		return reply{err: fmt.Errorf("%w: %s refused this node's stream: %s", kv.ErrNoLeader, addr, payload)}
	}
	if code != "" {
		return reply{err: kv.FromCode(code, string(payload))}
	}
	res, err := fsm.DecodeResult(payload)
	if err != nil {
		return reply{err: fmt.Errorf("%w: bad answer from %s: %v", kv.ErrUnknownOutcome, addr, err)}
	}
	return reply{res: res}
}

// fail ends the stream: every request still pending gets its fate, by
// whether the writer ever took it.
func (s *stream) fail(why error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = why
	close(s.ended)
	pending := s.pending
	s.pending = map[uint64]*request{}
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	for _, req := range pending {
		if req.state.CompareAndSwap(queued, abandoned) {
			req.reply <- reply{err: fmt.Errorf("%w: stream to %s ended before the write was sent: %v", kv.ErrNoLeader, s.addr, why)}
		} else {
			req.reply <- reply{err: fmt.Errorf("%w: stream to %s ended: %v", kv.ErrUnknownOutcome, s.addr, why)}
		}
	}
}
