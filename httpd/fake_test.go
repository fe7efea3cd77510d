package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// fakeStore is an in-memory Store. err, when set, is returned by every
// Read and Apply, to drive the error paths.
type fakeStore struct {
	mu       sync.Mutex
	index    uint64
	data     map[string]kv.Entry
	err      error
	ready    bool
	servers  []kv.Server
	applied  int // Apply calls that reached the store
	readTxns int
	idemKeys []string // idempotency keys seen by Apply
	sessions map[string]kv.Session
	// resolver, when set, turns ACLs on (see memACL).
	resolver *acl.Resolver
	// holdUntil is how long the last Read could wait for a leader
	// (kv.WithLeaderHold; zero: not held).
	holdUntil time.Time
}

func newFakeStore() *fakeStore {
	return &fakeStore{data: map[string]kv.Entry{}, ready: true, index: 1, servers: []kv.Server{
		{ID: "n1", Address: "127.0.0.1:7001", Leader: true, Voter: true},
		{ID: "n2", Address: "127.0.0.1:7002", Voter: true},
		{ID: "n3", Address: "127.0.0.1:7003", Voter: false},
	}}
}

func (f *fakeStore) Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holdUntil, _ = kv.LeaderHoldUntil(ctx)
	if f.err != nil {
		return nil, f.err
	}
	res := &kv.QueryResult{Index: f.index, KnownLeader: true, Stale: q.Stale}
	switch q.Kind {
	case kv.ReadGet:
		if e, ok := f.data[q.Key]; ok {
			res.Entries, res.Index = []kv.Entry{e}, e.ModifyIndex
		}
	default:
		seen := map[string]bool{}
		for _, e := range f.sorted(q.Key) {
			res.Entries = append(res.Entries, e)
			k := e.Key
			if q.Separator != "" {
				if i := strings.Index(k[len(q.Key):], q.Separator); i >= 0 {
					k = k[:len(q.Key)+i+len(q.Separator)]
				}
			}
			if !seen[k] {
				seen[k] = true
				res.Keys = append(res.Keys, k)
			}
		}
	}
	return res, nil
}

func (f *fakeStore) sorted(prefix string) []kv.Entry {
	var out []kv.Entry
	for k, e := range f.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (f *fakeStore) Apply(ctx context.Context, cmd *kv.Command) (*kv.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	if cmd.IdempotencyKey != "" {
		f.idemKeys = append(f.idemKeys, cmd.IdempotencyKey)
	}
	if f.err != nil {
		return nil, f.err
	}
	f.index++
	idx := f.index
	res := &kv.Result{Index: idx, OK: true}
	next := map[string]kv.Entry{}
	for k, v := range f.data {
		next[k] = v
	}
	for i, op := range cmd.Ops {
		old, exists := next[op.Key]
		fail := func(what string) { res.Errors = append(res.Errors, kv.OpError{OpIndex: i, What: what}) }
		switch op.Verb {
		case kv.VerbCAS, kv.VerbCheckIndex, kv.VerbDeleteCAS:
			if (op.Index == 0 && exists) || (op.Index != 0 && (!exists || old.ModifyIndex != op.Index)) {
				if !(op.Verb == kv.VerbDeleteCAS && !exists) {
					fail("index mismatch")
					continue
				}
			}
		case kv.VerbCheckNotExists:
			if exists {
				fail("exists")
			}
			continue
		}
		switch op.Verb {
		case kv.VerbSet, kv.VerbCAS:
			e := kv.Entry{Key: op.Key, Value: op.Value, Flags: op.Flags, CreateIndex: idx, ModifyIndex: idx}
			if exists {
				e.CreateIndex = old.CreateIndex
			}
			next[op.Key] = e
			res.Entries = append(res.Entries, kv.Entry{Key: e.Key, Flags: e.Flags, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex})
		case kv.VerbGet:
			if !exists {
				fail("missing")
				continue
			}
			res.Entries = append(res.Entries, old)
		case kv.VerbDelete, kv.VerbDeleteCAS:
			delete(next, op.Key)
		case kv.VerbDeleteTree:
			for k := range next {
				if strings.HasPrefix(k, op.Key) {
					delete(next, k)
				}
			}
		}
	}
	if len(res.Errors) > 0 {
		return &kv.Result{Index: idx, Errors: res.Errors}, nil
	}
	f.data = next
	return res, nil
}

func (f *fakeStore) ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (*kv.Result, error) {
	f.mu.Lock()
	f.readTxns++
	f.mu.Unlock()
	res, err := f.Apply(ctx, cmd)
	f.mu.Lock()
	f.applied--
	f.mu.Unlock()
	return res, err
}

// The fake's snapshot is its data as JSON.
func (f *fakeStore) OpenSnapshot(ctx context.Context, stale bool) (*kv.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	b, err := json.Marshal(f.data)
	return &kv.Snapshot{Index: f.index, ReadCloser: io.NopCloser(bytes.NewReader(b))}, err
}

func (f *fakeStore) LastContact() time.Duration { return 0 }

func (f *fakeStore) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	data := map[string]kv.Entry{}
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return fmt.Errorf("%w: bad snapshot: %v", kv.ErrInvalid, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = data
	return nil
}

func (f *fakeStore) Leader() (string, string) { return "127.0.0.1:7001", "n1" }

func (f *fakeStore) AutopilotHealth(ctx context.Context) (kv.AutopilotHealth, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := kv.AutopilotHealth{Healthy: true, FailureTolerance: (len(f.servers) - 1) / 2}
	for _, s := range f.servers {
		h.Servers = append(h.Servers, kv.ServerHealth{ID: s.ID, Name: s.ID, Address: s.Address, SerfStatus: "alive",
			Leader: s.Leader, Voter: s.Voter, Healthy: true, LastContact: "0s"})
	}
	return h, nil
}

func (f *fakeStore) Configuration(ctx context.Context) (kv.Configuration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return kv.Configuration{Servers: append([]kv.Server(nil), f.servers...), Index: 9}, nil
}

func (f *fakeStore) JoinReadReplica(ctx context.Context, id, addr string) error {
	if err := f.Join(ctx, id, addr); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.servers {
		if f.servers[i].ID == id {
			f.servers[i].Voter = false
		}
	}
	return nil
}

func (f *fakeStore) Join(ctx context.Context, id, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.servers = append(f.servers, kv.Server{ID: id, Address: addr, Voter: true})
	return nil
}

func (f *fakeStore) Remove(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.servers {
		if s.ID == id {
			f.servers = append(f.servers[:i], f.servers[i+1:]...)
			return nil
		}
	}
	return kv.ErrUnknownPeer
}

func (f *fakeStore) TransferLeadership(ctx context.Context, id string) error { return f.err }

func (f *fakeStore) Ready() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.ready }

func kvEntry(key string) kv.Entry {
	return kv.Entry{Key: key, Value: []byte("v"), CreateIndex: 1, ModifyIndex: 1}
}

func (f *fakeStore) ID() string   { return "n1" }
func (f *fakeStore) Addr() string { return "127.0.0.1:7001" }

func (f *fakeStore) CreateSession(ctx context.Context, spec kv.Session) (string, error) {
	if spec.Node == "" {
		spec.Node = f.ID()
	}
	if err := spec.Validate(f.SessionTTLMin()); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	spec.ID = fmt.Sprintf("00000000-0000-0000-0000-%012d", f.index)
	spec.CreateIndex, spec.ModifyIndex = f.index, f.index
	if f.sessions == nil {
		f.sessions = map[string]kv.Session{}
	}
	f.sessions[spec.ID] = spec
	return spec.ID, nil
}

func (f *fakeStore) DestroySession(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, id)
	return nil
}

func (f *fakeStore) RenewSession(ctx context.Context, id string) (kv.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return kv.Session{}, kv.Errorf(kv.ErrNotFound, "Session id '%s' not found", id)
	}
	return s, nil
}

func (f *fakeStore) Sessions(ctx context.Context, q kv.SessionQuery) (*kv.SessionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := &kv.SessionResult{Index: f.index, KnownLeader: true, Sessions: []kv.Session{}}
	for _, s := range f.sessions {
		if (q.ID == "" || s.ID == q.ID) && (q.Node == "" || s.Node == q.Node) {
			res.Sessions = append(res.Sessions, s)
		}
	}
	sort.Slice(res.Sessions, func(i, j int) bool { return res.Sessions[i].ID < res.Sessions[j].ID })
	return res, nil
}

func (f *fakeStore) HeldKeys(context.Context, bool) (map[string][]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	held := map[string][]string{}
	for k, e := range f.data {
		if e.Session != "" {
			held[e.Session] = append(held[e.Session], k)
		}
	}
	for _, keys := range held {
		sort.Strings(keys)
	}
	return held, nil
}

// The fake's ACLs are off unless resolver is set (memACL); the ACL API
// itself is tested against real nodes in raftstore.
func (f *fakeStore) ACLsEnabled() bool { return f.resolver != nil }
func (f *fakeStore) ResolveToken(secret string) (*acl.Identity, error) {
	if f.resolver == nil {
		return nil, kv.ErrACLDisabled
	}
	return f.resolver.Resolve(secret)
}
func (f *fakeStore) ApplyACL(context.Context, *acl.Command) (*kv.Result, error) {
	return nil, kv.ErrACLDisabled
}
func (f *fakeStore) ACLState(context.Context, bool) (ACLReader, error) {
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

func (f *fakeStore) SessionTTLMin() time.Duration { return kv.DefaultSessionTTLMin }
