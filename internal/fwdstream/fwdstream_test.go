package fwdstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNode applies a command by answering with its first key as an entry;
// a key "block" waits until release closes (or the request's context ends),
// "hang" until release closes.
type fakeNode struct {
	mu      sync.Mutex
	applied map[string]int
	groups  []uint64 // of every request, in arrival order
	// generations of every request, in arrival order
	generations []uint64
	refuse      atomic.Bool
	gen         atomic.Uint64
	release     chan struct{}
	started     chan string
}

func newFakeNode() *fakeNode {
	return &fakeNode{applied: map[string]int{}, release: make(chan struct{}), started: make(chan string, 1024)}
}

func (n *fakeNode) ApplyForwarded(ctx context.Context, group, generation uint64, command []byte) (*kv.Result, error) {
	cmd, err := fsm.DecodeCommand(command)
	if err == nil {
		err = cmd.Validate(1024)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kv.ErrInvalid, err)
	}
	key := cmd.Ops[0].Key
	n.mu.Lock()
	n.groups = append(n.groups, group)
	n.generations = append(n.generations, generation)
	n.mu.Unlock()
	n.started <- key
	switch key {
	case "block":
		select {
		case <-n.release:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", kv.ErrUnknownOutcome, ctx.Err())
		}
	case "hang": // no answer, whatever the caller's time limit says
		<-n.release
	}
	if key == "not-leader" {
		return nil, fmt.Errorf("%w: not the leader", kv.ErrNoLeader)
	}
	if key == "rich" {
		return richResult, nil
	}
	n.mu.Lock()
	n.applied[key]++
	n.mu.Unlock()
	return &kv.Result{OK: true, Index: 7, Entries: []kv.Entry{{Key: key, Value: cmd.Ops[0].Value}}}, nil
}

// richResult has every field a result can carry.
var richResult = &kv.Result{Index: 42, OK: false,
	Entries: []kv.Entry{{Key: "l", Value: []byte("v"), Flags: 3, CreateIndex: 4, ModifyIndex: 5, LockIndex: 6, Session: "s"}},
	Errors:  []kv.OpError{{OpIndex: 1, What: "failed", InvalidSession: true}}}

func (n *fakeNode) MaxCommandBytes() int { return 64 << 10 }

func (n *fakeNode) AuthorizePeer(_ *tls.ConnectionState, secret string) error {
	if n.refuse.Load() || secret != "s3cret" {
		return fmt.Errorf("%w: not a member", kv.ErrPermissionDenied)
	}
	return nil
}

func (n *fakeNode) AuthGeneration() [2]uint64 { return [2]uint64{n.gen.Load(), 0} }

func (n *fakeNode) count(key string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applied[key]
}

// serve runs a server for node on a loopback port.
func serve(t *testing.T, node Node) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(node, 5*time.Second)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return srv, ln.Addr().String()
}

type dialer struct{ dials atomic.Int32 }

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

func newClient(t *testing.T, secret string) (*Client, *dialer) {
	d := &dialer{}
	c := NewClient(d.dial, func() string { return secret })
	t.Cleanup(c.Close)
	return c, d
}

func put(key, value string) []byte {
	return fsm.EncodeCommand(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSet, Key: key, Value: []byte(value)}}})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Many writes in flight on one stream each get their own answer.
func TestConcurrentWritesOnOneStream(t *testing.T) {
	node := newFakeNode()
	_, addr := serve(t, node)
	c, d := newClient(t, "s3cret")
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			res, err := c.Apply(ctxT(t), addr, 0, 0, put(key, "v"+key))
			switch {
			case err != nil:
				errs <- err
			case !res.OK || res.Index != 7 || len(res.Entries) != 1 || res.Entries[0].Key != key || string(res.Entries[0].Value) != "v"+key:
				errs <- fmt.Errorf("%s answered with %+v", key, res)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := d.dials.Load(); n != 1 {
		t.Fatalf("%d connections for one peer", n)
	}
	if res, err := c.Apply(ctxT(t), addr, 0, 0, put("rich", "")); err != nil || !reflect.DeepEqual(res, richResult) {
		t.Fatalf("a result with every field: %+v, %v", res, err)
	}
	// The leader's refusal comes back as itself: the caller retries.
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("not-leader", "")); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a refusal by a node that is not the leader: %v", err)
	}
	// A command the leader would not take is refused as invalid.
	if _, err := c.Apply(ctxT(t), addr, 0, 0, fsm.EncodeCommand(&kv.Command{})); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("an empty command: %v", err)
	}
}

// A peer that refuses this node, or does not speak the protocol, is
// unavailable (nothing sent) and is not dialled again for a while.
func TestUnavailable(t *testing.T) {
	node := newFakeNode()
	_, addr := serve(t, node)
	c, d := newClient(t, "wrong")
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("a", "")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a refused hello: %v", err)
	}
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("a", "")); !errors.Is(err, ErrUnavailable) || d.dials.Load() != 1 {
		t.Fatalf("at once again: %v after %d dials", err, d.dials.Load())
	}
	if node.count("a") != 0 {
		t.Fatal("a refused peer's write was applied")
	}

	// An older node hands the connection to its HTTP server, which must
	// answer the preamble at once (a 400), not wait out its header timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := &http.Server{ReadHeaderTimeout: time.Hour, Handler: http.NotFoundHandler()}
	served := make(chan struct{})
	go func() { defer close(served); _ = old.Serve(ln) }()
	defer func() { old.Close(); <-served }()
	c2, _ := newClient(t, "s3cret")
	if _, err := c2.Apply(ctxT(t), ln.Addr().String(), 0, 0, put("a", "")); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "does not speak") {
		t.Fatalf("a peer that speaks HTTP: %v", err)
	}
}

// The stream ends with writes in flight: a write the leader received has
// an unknown outcome; one its caller took back before it was sent was
// never applied.
func TestOutcomes(t *testing.T) {
	node := newFakeNode()
	srv, addr := serve(t, node)
	c, _ := newClient(t, "s3cret")
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("first", "")); err != nil {
		t.Fatal(err)
	}

	// Callers that give up at once: each either took its write back (and
	// then it is never applied) or learns the outcome is unknown.
	for i := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		key := fmt.Sprintf("gaveup%d", i)
		_, err := c.Apply(ctx, addr, 0, 0, put(key, ""))
		if err == nil && node.count(key) != 1 { // answered before the caller looked at ctx
			t.Fatalf("%s answered but applied %d times", key, node.count(key))
		}
		if err != nil && !errors.Is(err, kv.ErrNoLeader) && !errors.Is(err, kv.ErrUnknownOutcome) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a call given up: %v", err)
		}
		if errors.Is(err, kv.ErrNoLeader) || errors.Is(err, ErrUnavailable) {
			defer func() {
				if node.count(key) != 0 {
					t.Errorf("%s was reported not sent, and applied", key)
				}
			}()
		}
	}

	// A write in flight when the server goes away.
	result := make(chan error, 1)
	go func() {
		_, err := c.Apply(ctxT(t), addr, 0, 0, put("block", ""))
		result <- err
	}()
	for started := false; !started; {
		select {
		case key := <-node.started:
			started = key == "block"
		case err := <-result:
			t.Fatalf("the blocked write returned: %v", err)
		}
	}
	srv.Close()
	if err := <-result; !errors.Is(err, kv.ErrUnknownOutcome) {
		t.Fatalf("a write in flight on a stream that ended: %v", err)
	}
	// Once the peer is gone, the stream is unavailable, not a hang.
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("after", "")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after the server closed: %v", err)
	}
}

// Membership or ACL changes check the peer again: a node no longer
// allowed is refused, as "not done" (it may try elsewhere).
func TestReauthorizedOnChange(t *testing.T) {
	node := newFakeNode()
	_, addr := serve(t, node)
	c, d := newClient(t, "s3cret")
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("a", "")); err != nil {
		t.Fatal(err)
	}
	node.refuse.Store(true)
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("b", "")); err != nil {
		t.Fatalf("nothing changed, no new check: %v", err)
	}
	node.gen.Add(1)
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("c", "")); !errors.Is(err, kv.ErrNoLeader) || node.count("c") != 0 {
		t.Fatalf("after a change that removed the peer: %v (applied %d)", err, node.count("c"))
	}
	// The next call says hello again (its credential may have changed):
	// refused now, it goes by HTTP; let in again, it streams.
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("d", "")); !errors.Is(err, ErrUnavailable) || d.dials.Load() != 2 {
		t.Fatalf("after the refusal: %v, %d dials", err, d.dials.Load())
	}
	node.refuse.Store(false)
	c.mu.Lock()
	delete(c.failed, addr) // (instead of waiting retryAfter)
	c.mu.Unlock()
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("e", "")); err != nil || node.count("e") != 1 || d.dials.Load() != 3 {
		t.Fatalf("let in again: %v, applied %d, %d dials", err, node.count("e"), d.dials.Load())
	}
}

// A stream that answers nothing (a black-holed peer looks like this) is
// dropped when a caller times out on a write it has heard nothing about
// for a while: the next call dials anew. A caller giving up soon after
// sending proves nothing and leaves the stream alone.
func TestSilentStreamIsDropped(t *testing.T) {
	node := newFakeNode()
	_, addr := serve(t, node)
	defer close(node.release)
	c, d := newClient(t, "s3cret")
	var offset atomic.Int64 // the client's clock runs ahead by this much
	c.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("first", "")); err != nil {
		t.Fatal(err)
	}
	// hang sends a write the peer never answers and gives up on it once
	// the peer has it, after moving the clock by skip.
	hang := func(skip time.Duration) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		result := make(chan error, 1)
		go func() { _, err := c.Apply(ctx, addr, 0, 0, put("hang", "")); result <- err }()
		for key := range node.started {
			if key == "hang" {
				break
			}
		}
		offset.Add(int64(skip))
		cancel()
		return <-result
	}
	if err := hang(0); !errors.Is(err, kv.ErrUnknownOutcome) {
		t.Fatalf("a held write given up at once: %v", err)
	}
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("kept", "")); err != nil || d.dials.Load() != 1 {
		t.Fatalf("after giving up on a fresh write: %v after %d dials", err, d.dials.Load())
	}
	if err := hang(time.Hour); !errors.Is(err, kv.ErrUnknownOutcome) {
		t.Fatalf("a held write given up after an hour of silence: %v", err)
	}
	if _, err := c.Apply(ctxT(t), addr, 0, 0, put("after", "")); err != nil || d.dials.Load() != 2 {
		t.Fatalf("after a silent stream: %v after %d dials", err, d.dials.Load())
	}
}

// Each request names its raft group and the range's generation as the
// sender knows it; a peer of the first version, which names no group,
// forwards to group 0, one of the second (no generation) with generation 0.
func TestRequestsNameTheirGroup(t *testing.T) {
	node := newFakeNode()
	_, addr := serve(t, node)
	c, _ := newClient(t, "s3cret")
	for _, g := range []uint64{3, 0, 1 << 40} {
		if _, err := c.Apply(ctxT(t), addr, g, g+7, put(fmt.Sprint("k", g), "")); err != nil {
			t.Fatal(err)
		}
	}
	// Clients of the older versions: hello, then one request each.
	for _, old := range []struct {
		version uint64
		fields  [][]byte
	}{
		{versionUngrouped, [][]byte{uvarint(1), uvarint(5000), put("v1", "")}},
		{versionGrouped, [][]byte{uvarint(1), uvarint(5000), uvarint(9), put("v2", "")}},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		hello := append([]byte(preamble), appendFrame(nil, kindHello, uvarint(old.version), []byte("s3cret"))...)
		req := appendFrame(nil, kindRequest, old.fields...)
		if _, err := conn.Write(append(hello, req...)); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		var m [len(magic)]byte
		if _, err := io.ReadFull(r, m[:]); err != nil {
			t.Fatal(err)
		}
		for _, want := range []byte{kindAck, kindResponse} {
			kind, body, err := readFrame(r, 1<<20)
			if err != nil || kind != want {
				t.Fatalf("version %d: frame %q (%q), %v; want %q", old.version, kind, body, err, want)
			}
		}
	}
	node.mu.Lock()
	defer node.mu.Unlock()
	if want := []uint64{3, 0, 1 << 40, 0, 9}; !reflect.DeepEqual(node.groups, want) {
		t.Fatalf("groups %v, want %v", node.groups, want)
	}
	if want := []uint64{10, 7, 1<<40 + 7, 0, 0}; !reflect.DeepEqual(node.generations, want) {
		t.Fatalf("generations %v, want %v", node.generations, want)
	}
}

// A peer of the release before groups speaks version 1 only and refuses a
// version-2 hello: nothing is sent, and the caller takes the HTTP path.
func TestOldPeerRefusesVersion2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // the first release's server: any version but 1 is refused
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var pre [len(preamble)]byte
		if _, err := io.ReadFull(r, pre[:]); err != nil {
			return
		}
		_, body, err := readFrame(r, 1<<16)
		if err != nil {
			return
		}
		cur := cursor{b: body}
		if v := cur.uvarint(); v != versionUngrouped {
			msg := fmt.Sprintf("unsupported forwarding protocol version %d", v)
			c.Write(append([]byte(magic), appendFrame(nil, kindAck, appendStr(nil, kv.Code(kv.ErrInvalid)), []byte(msg))...))
		}
	}()
	c, _ := newClient(t, "s3cret")
	if _, err := c.Apply(ctxT(t), ln.Addr().String(), 0, 0, put("a", "")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("refused by a version-1 peer: %v", err)
	}
	<-done
}
