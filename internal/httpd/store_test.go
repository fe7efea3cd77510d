package httpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/fsm"
	"github.com/raftkv/raftkv/kv"
)

// testStore is every store the API takes (see allOf). Keys, transactions,
// sessions and snapshots are a real state machine, fsm.FSM, fed commands
// at increasing log indexes as raft would feed them and read through its
// own reads, so the handlers are tested against the semantics nodes run.
// What is not the state machine's is a small fake: the cluster and this
// node (leader n1 of n1, n2 and n3), the ACLs (off unless resolver is set,
// see memACL; the ACL API is tested against real nodes in raftstore), and
// err, an error injected into the KV, snapshot and operator calls.
type testStore struct {
	fsm *fsm.FSM

	applyMu sync.Mutex // one command at a time, as raft applies them
	index   uint64     // of the last command applied

	mu       sync.Mutex
	err      error // returned by every Read, Apply, ReadTxn, OpenSnapshot, Join and TransferLeadership
	ready    bool
	servers  []kv.Server
	applied  int // Apply calls that reached the store
	readTxns int
	idemKeys []string // idempotency keys seen by Apply
	sessions int      // sessions created through CreateSession
	// resolver, when set, turns ACLs on (see memACL).
	resolver *acl.Resolver
	// holdUntil is how long the last Read could wait for a leader
	// (kv.WithLeaderHold; zero: not held).
	holdUntil time.Time
}

func newTestStore(t testing.TB) *testStore {
	t.Helper()
	f, err := fsm.Open(t.TempDir(), fsm.Options{Small: true})
	if err != nil {
		t.Fatalf("open the state machine: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close the state machine: %v", err)
		}
	})
	return &testStore{fsm: f, ready: true, servers: []kv.Server{
		{ID: "n1", Address: "127.0.0.1:7001", Leader: true, Voter: true},
		{ID: "n2", Address: "127.0.0.1:7002", Voter: true},
		{ID: "n3", Address: "127.0.0.1:7003", Voter: false},
	}}
}

// allOf serves every concern of the API from s.
func allOf(s interface {
	KVStore
	SessionStore
	SnapshotStore
	ACLStore
	ClusterStore
	Node
}) Stores {
	return Stores{KV: s, Sessions: s, Snapshots: s, ACL: s, Cluster: s, Node: s}
}

func (s *testStore) injected() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// propose applies cmd at the next log index, stamped with the time as a
// leader stamps it, and answers as raftstore does with the state
// machine's response.
func (s *testStore) propose(cmd *kv.Command) (*kv.Result, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	c := *cmd
	c.Time = time.Now()
	s.index++
	switch resp := s.fsm.Apply(&raft.Log{Index: s.index, Type: raft.LogCommand, Data: fsm.EncodeCommand(&c)}).(type) {
	case *kv.Result:
		return resp, nil
	case error:
		return nil, resp
	default:
		return nil, fmt.Errorf("log index %d: unexpected state machine response %T", s.index, resp)
	}
}

// --- KVStore ---

// Read answers at once: a blocking query (q.MinIndex) does not wait.
func (s *testStore) Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error) {
	s.mu.Lock()
	s.holdUntil, _ = kv.LeaderHoldUntil(ctx)
	s.mu.Unlock()
	if err := s.injected(); err != nil {
		return nil, err
	}
	res, err := s.fsm.Read(q)
	if err != nil {
		return nil, err
	}
	res.KnownLeader = true
	return res, nil
}

func (s *testStore) Apply(ctx context.Context, cmd *kv.Command) (*kv.Result, error) {
	if err := admit(ctx, cmd); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.applied++
	if cmd.IdempotencyKey != "" {
		s.idemKeys = append(s.idemKeys, cmd.IdempotencyKey)
	}
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.propose(cmd)
}

// admit is what the group does with a write where it enters the cluster:
// validate it, then run the caller's check (see group.Propose).
func admit(ctx context.Context, cmd *kv.Command) error {
	if err := fsm.KVEntry(cmd).Validate(fsm.Limits{MaxValueBytes: testMaxValue}); err != nil {
		return err
	}
	if check := kv.CheckOf(ctx); check != nil {
		return check(cmd.Ops)
	}
	return nil
}

func (s *testStore) ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (*kv.Result, error) {
	if err := admit(ctx, cmd); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.readTxns++
	s.mu.Unlock()
	if err := s.injected(); err != nil {
		return nil, err
	}
	return s.fsm.Evaluate(cmd)
}

// --- SnapshotStore: the state machine's own stream, without Consul's
// archive around it (raftstore's) ---

func (s *testStore) OpenSnapshot(ctx context.Context, stale bool) (*kv.Snapshot, error) {
	if err := s.injected(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	index, err := s.fsm.WriteSnapshot(&buf)
	if err != nil {
		return nil, fmt.Errorf("write snapshot: %w", err)
	}
	return &kv.Snapshot{Index: index, ReadCloser: io.NopCloser(&buf)}, nil
}

func (s *testStore) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	var checked bytes.Buffer
	if err := fsm.CopyForRestore(&checked, r); err != nil {
		return err // kv.ErrInvalid: not a snapshot
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := s.fsm.Restore(io.NopCloser(&checked)); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	return nil
}

// --- SessionStore ---

// CreateSession stamps the session's ID as a leader does (here from a
// sequence, so that IDs are the same every run).
func (s *testStore) CreateSession(ctx context.Context, spec kv.Session) (string, error) {
	if spec.Node == "" {
		spec.Node = s.ID()
	}
	if spec.Behavior == "" {
		spec.Behavior = kv.BehaviorRelease
	}
	if err := spec.Validate(s.SessionTTLMin()); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.sessions++
	id := fmt.Sprintf("00000000-0000-0000-0000-%012d", s.sessions)
	s.mu.Unlock()
	return id, s.createSession(id, spec)
}

func (s *testStore) createSession(id string, spec kv.Session) error {
	spec.ID, spec.CreateIndex, spec.ModifyIndex = "", 0, 0
	res, err := s.propose(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: id, Value: fsm.EncodeSession(&spec)}}})
	if err != nil {
		return fmt.Errorf("create session %s: %w", id, err)
	}
	if !res.OK {
		return fmt.Errorf("create session %s: refused: %v", id, res.Errors)
	}
	return nil
}

func (s *testStore) DestroySession(ctx context.Context, id string) error {
	_, err := s.propose(&kv.Command{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy, Session: id}}})
	return err
}

// RenewSession finds the session: its timer is the leader's, not the
// state machine's.
func (s *testStore) RenewSession(ctx context.Context, id string) (kv.Session, error) {
	sess, _, ok, err := s.fsm.Session(id)
	if err != nil {
		return kv.Session{}, err
	}
	if !ok {
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id '%s' not found", id)
	}
	return sess, nil
}

// Sessions answers at once: a blocking query (q.MinIndex) does not wait.
func (s *testStore) Sessions(ctx context.Context, q kv.SessionQuery) (*kv.SessionResult, error) {
	res := &kv.SessionResult{Stale: q.Stale, KnownLeader: true, Sessions: []kv.Session{}}
	var err error
	if q.ID != "" {
		var sess kv.Session
		var ok bool
		if sess, res.Index, ok, err = s.fsm.Session(q.ID); ok {
			res.Sessions = append(res.Sessions, sess)
		}
	} else {
		res.Sessions, res.Index, err = s.fsm.Sessions(q.Node)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *testStore) HeldKeys(context.Context, bool) (map[string][]string, error) {
	return s.fsm.HeldKeys()
}

// --- test helpers: state set up and looked at through the state machine ---

// write applies ops (all must apply).
func (s *testStore) write(t testing.TB, ops ...kv.Op) {
	t.Helper()
	res, err := s.propose(&kv.Command{Ops: ops})
	if err != nil || !res.OK {
		t.Fatalf("write %+v: %+v, %v", ops, res, err)
	}
}

// put sets key to value.
func (s *testStore) put(t testing.TB, key, value string) {
	t.Helper()
	s.write(t, kv.Op{Verb: kv.VerbSet, Key: key, Value: []byte(value)})
}

// hold creates session id on node (unless it exists) and locks key with it.
func (s *testStore) hold(t testing.TB, id, node, key string) {
	t.Helper()
	if _, _, ok, err := s.fsm.Session(id); err != nil || !ok {
		if err := s.createSession(id, kv.Session{Node: node, Behavior: kv.BehaviorRelease}); err != nil {
			t.Fatal(err)
		}
	}
	s.write(t, kv.Op{Verb: kv.VerbLock, Key: key, Session: id})
}

// has says whether key exists.
func (s *testStore) has(t testing.TB, key string) bool {
	t.Helper()
	_, _, err := s.fsm.Get(key)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// keys are the keys that exist, sorted.
func (s *testStore) keys(t testing.TB) []string {
	t.Helper()
	keys, _, err := s.fsm.Keys("", "")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// dump is the whole state: every entry and every session.
func (s *testStore) dump(t testing.TB) string {
	t.Helper()
	entries, _, err := s.fsm.List("")
	if err != nil {
		t.Fatal(err)
	}
	sessions, _, err := s.fsm.Sessions("")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%+v\n", e)
	}
	for _, sess := range sessions {
		fmt.Fprintf(&b, "%+v\n", sess)
	}
	return b.String()
}

// --- Node and ClusterStore: fakes ---

func (s *testStore) ID() string                   { return "n1" }
func (s *testStore) Addr() string                 { return "127.0.0.1:7001" }
func (s *testStore) Leader() (string, string)     { return "127.0.0.1:7001", "n1" }
func (s *testStore) LastContact() time.Duration   { return 0 }
func (s *testStore) SessionTTLMin() time.Duration { return kv.DefaultSessionTTLMin }
func (s *testStore) Ready() bool                  { s.mu.Lock(); defer s.mu.Unlock(); return s.ready }

func (s *testStore) AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := kv.AutopilotHealth{Healthy: true, FailureTolerance: (len(s.servers) - 1) / 2}
	for _, srv := range s.servers {
		h.Servers = append(h.Servers, kv.ServerHealth{ID: srv.ID, Name: srv.ID, Address: srv.Address, SerfStatus: "alive",
			Leader: srv.Leader, Voter: srv.Voter, Healthy: true, LastContact: "0s"})
	}
	return h, nil
}

func (s *testStore) Configuration(ctx context.Context) (kv.Configuration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return kv.Configuration{Servers: append([]kv.Server(nil), s.servers...), Index: 9}, nil
}

func (s *testStore) JoinReadReplica(ctx context.Context, id, addr string) error {
	if err := s.Join(ctx, id, addr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.servers {
		if s.servers[i].ID == id {
			s.servers[i].Voter = false
		}
	}
	return nil
}

func (s *testStore) Join(ctx context.Context, id, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.servers = append(s.servers, kv.Server{ID: id, Address: addr, Voter: true})
	return nil
}

func (s *testStore) Remove(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, srv := range s.servers {
		if srv.ID == id {
			s.servers = append(s.servers[:i], s.servers[i+1:]...)
			return nil
		}
	}
	return kv.ErrUnknownPeer
}

func (s *testStore) TransferLeadership(ctx context.Context, id string) error { return s.injected() }

// --- ACLStore: a fake ---

func (s *testStore) ACLsEnabled() bool { return s.resolver != nil }
func (s *testStore) ResolveToken(secret string) (*acl.Identity, error) {
	if s.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	return s.resolver.Resolve(secret)
}
func (s *testStore) ApplyACL(context.Context, *acl.Command) (*kv.Result, error) {
	return nil, kv.ErrACLDisabled
}
func (s *testStore) ACLState(context.Context, bool) (ACLReader, error) {
	return nil, kv.ErrACLDisabled
}

// memACL is an acl.Source with fixed tokens (by secret) and policies.
type memACL struct {
	tokens   map[string]*acl.Token
	policies map[string]*acl.Policy
}

func (m memACL) ACLIndex() uint64 { return 1 }
func (m memACL) ACLTokenBySecret(secret string) (*acl.Token, error) {
	return m.tokens[secret], nil
}
func (m memACL) ACLPolicy(id string) (*acl.Policy, error) { return m.policies[id], nil }
