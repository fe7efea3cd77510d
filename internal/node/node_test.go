package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftkv/raftkv/internal/autopilot"
	"github.com/raftkv/raftkv/internal/peerrpc"
	"github.com/raftkv/raftkv/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeGroup answers a read index with its own number.
type fakeGroup struct{ index uint64 }

func (g fakeGroup) ApplyForwarded(_ context.Context, generation uint64, _ []byte) (*kv.Result, error) {
	return &kv.Result{Index: g.index + 1000*generation, OK: true}, nil
}
func (g fakeGroup) ReadIndex(context.Context, *peerrpc.Voucher) (uint64, error) { return g.index, nil }
func (fakeGroup) Term(string) (uint64, error)                                   { return 1, nil }
func (fakeGroup) ChangeMembership(context.Context, peerrpc.Membership) error    { return nil }
func (fakeGroup) Restore(context.Context, io.Reader) error                      { return nil }
func (fakeGroup) Renew(context.Context, string) (kv.Session, error)             { return kv.Session{}, nil }
func (fakeGroup) Stats() autopilot.Stats                                        { return autopilot.Stats{} }
func (fakeGroup) AutopilotHealth() (kv.AutopilotHealth, error)                  { return kv.AutopilotHealth{}, nil }
func (fakeGroup) MaxCommandBytes() int                                          { return 1 << 20 }

// auth requires secret when it is not empty; with broken set, it cannot
// read the secret.
type auth struct {
	secret string
	broken bool
}

func (auth) MemberAddrs() []string      { return nil }
func (a auth) PeerSecretRequired() bool { return a.secret != "" || a.broken }
func (a auth) PeerSecret() (string, error) {
	if a.broken {
		return "", errors.New("state machine unreadable")
	}
	return a.secret, nil
}
func (auth) AuthGeneration() [2]uint64 { return [2]uint64{} }

func open(t *testing.T, a auth) *Node {
	t.Helper()
	n, err := Open(Config{ID: "n1", Addr: "127.0.0.1:0", DataDir: t.TempDir(), LongCall: time.Second, ShortCall: time.Second, MaxCommandBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{0, 5} {
		if err := n.AddGroup(id, fakeGroup{index: 100 + id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.AddGroup(5, fakeGroup{}); err == nil {
		t.Fatal("a second group 5 was added")
	}
	n.SetPeerAuth(a)
	n.Serve(http.NotFoundHandler())
	t.Cleanup(func() { n.Close() })
	return n
}

// Peer calls reach the group they name; a group the node does not carry
// answers "no leader" (nothing done); the public API gets the rest.
func TestPeerCallsReachTheirGroup(t *testing.T) {
	n := open(t, auth{})
	ctx := context.Background()
	for _, id := range []uint64{0, 5} {
		idx, err := n.Peers(id).ReadIndex(ctx, n.Addr(), peerrpc.Voucher{ID: "x"})
		if err != nil || idx != 100+id {
			t.Fatalf("group %d: read index %d, %v", id, idx, err)
		}
		res, err := n.Forwards().Apply(ctx, n.Addr(), id, 3, []byte("any")) // generation 3 reaches the group
		if err != nil || res.Index != 3100+id {
			t.Fatalf("group %d: forwarded write answered %+v, %v", id, res, err)
		}
	}
	if _, err := n.Peers(9).ReadIndex(ctx, n.Addr(), peerrpc.Voucher{}); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a group the node does not carry: %v", err)
	}
	n.RemoveGroup(5)
	if _, err := n.Peers(5).ReadIndex(ctx, n.Addr(), peerrpc.Voucher{}); !errors.Is(err, kv.ErrNoLeader) {
		t.Fatalf("a removed group: %v", err)
	}
	resp, err := http.Get("http://" + n.Addr() + "/v1/kv/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("public API: status %d", resp.StatusCode)
	}
}

// Without TLS and with a secret required, only callers presenting it get
// in; the node presents its own.
func TestPeerSecret(t *testing.T) {
	n := open(t, auth{secret: "s3cret"})
	if got := n.presentedSecret(); got != "s3cret" {
		t.Fatalf("presents %q", got)
	}
	if !n.peerAuthorized(nil, "s3cret") || n.peerAuthorized(nil, "wrong") || n.peerAuthorized(nil, "") {
		t.Fatal("the secret does not decide")
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.Addr()+peerrpc.Prefix+"stats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a call without the secret: status %d", resp.StatusCode)
	}
	// Its own client presents it, and gets in.
	if _, err := n.Peers(0).Stats(context.Background(), n.Addr()); err != nil {
		t.Fatalf("the node's own client: %v", err)
	}
}

// A secret that cannot be read lets nobody in (not everybody, as a secret
// not chosen yet does).
func TestUnreadableSecretLetsNobodyIn(t *testing.T) {
	n := open(t, auth{broken: true})
	if n.peerAuthorized(nil, "") || n.peerAuthorized(nil, "anything") {
		t.Fatal("a peer let in without a secret to check")
	}
	if _, err := n.Peers(0).Stats(context.Background(), n.Addr()); err == nil {
		t.Fatal("a peer call got in")
	}
}
