package fsm

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// ACL state: policies and tokens, as JSON records, with name and secret
// indexes; the bootstrap mark and the ACL index ("m:acl", raised by every
// change, which resolvers use to drop their caches). Every rule that
// depends on stored state (unique names, existing policies, built-ins that
// cannot go) is checked here, so every node refuses the same commands.
var (
	aclPolicyPrefix     = []byte("ap") // ID → Policy
	aclPolicyNamePrefix = []byte("aP") // name → ID
	aclTokenPrefix      = []byte("at") // accessor → Token
	aclSecretPrefix     = []byte("aT") // secret → accessor
	metaACL             = []byte("m:acl")
	metaACLBootstrap    = []byte("m:aclboot")
	metaPeerSecret      = []byte("m:peersecret")
)

// EncodeACLCommand is the op value of a legacy kv.VerbACL command: c as
// JSON. It panics on a token CreateTime that JSON cannot carry (a year
// past 9999).
//
// Deprecated: legacy encoding, use EncodeEntry(ACLEntry(c)).
func EncodeACLCommand(c *acl.Command) []byte { return encodeACLJSON(c) }

// aclCommand applies one ACL change: c, or for a legacy entry whose JSON
// did not parse, unparsed (parsed again here, so that the refusal reads
// as it did in the versions that wrote it). Refusals are answers (the same
// on every node); err is a storage failure.
func (b *batchState) aclCommand(w writer, idx uint64, now int64, c *acl.Command, unparsed *LegacyBody) (any, error) {
	if unparsed != nil {
		var err error
		if c, err = decodeACLJSON(unparsed.Bytes); err != nil {
			return kv.Errorf(kv.ErrInvalid, "bad ACL command: %v", err), nil
		}
	}
	if c == nil {
		c = &acl.Command{}
	}
	a := aclApply{txn: b.txn, w: w, idx: idx, now: now}
	res, err := a.apply(c)
	var refused *kv.Error
	if errors.As(err, &refused) {
		return refused, nil
	}
	if err != nil {
		return nil, err
	}
	if err := w.Set(metaACL, uintBytes(idx)); err != nil {
		return nil, err
	}
	b.aclChanged = idx
	return res, nil
}

type aclApply struct {
	txn *badger.Txn
	w   writer
	idx uint64
	now int64
}

// apply returns the result, or an error: a *kv.Error is a refusal (an
// answer, the same on every node), anything else a storage failure.
func (a *aclApply) apply(c *acl.Command) (*kv.Result, error) {
	refuse := func(sentinel error, format string, args ...any) (*kv.Result, error) {
		return nil, kv.Errorf(sentinel, format, args...)
	}
	switch c.Op {
	case acl.OpBootstrap, acl.OpInitialManagement:
		if c.Token == nil {
			return refuse(kv.ErrInvalid, "bootstrap without a token")
		}
		boot, err := readUint(a.txn, metaACLBootstrap)
		if err != nil {
			return nil, err
		}
		if c.Op == acl.OpBootstrap && boot != 0 {
			return refuse(kv.ErrPermissionDenied, "Permission denied: ACL bootstrap no longer allowed (reset index: %d)", boot)
		}
		old, err := a.tokenBySecret(c.Token.SecretID)
		switch {
		case err != nil:
			return nil, err
		case old != nil && c.Op == acl.OpBootstrap:
			return refuse(kv.ErrInvalid, "a token with that SecretID already exists")
		case old != nil:
			return a.result(old), nil // the initial management token is there
		}
		t := *c.Token
		t.Policies = []acl.PolicyLink{{ID: acl.GlobalManagementID}}
		if boot == 0 {
			if err := a.w.Set(metaACLBootstrap, uintBytes(a.idx)); err != nil {
				return nil, err
			}
		}
		return a.putToken(&t, nil)
	case acl.OpPolicySet:
		return a.setPolicy(c)
	case acl.OpPolicyDelete:
		if b, ok := acl.BuiltinPolicy(c.ID); ok {
			return refuse(kv.ErrInvalid, "Deletion of the builtin %s policy is not permitted", b.Name)
		}
		old, err := a.policy(c.ID)
		if err != nil || old == nil {
			return &kv.Result{Index: a.idx, OK: true}, err
		}
		if err := a.w.Delete(prefixed(aclPolicyPrefix, old.ID)); err != nil {
			return nil, err
		}
		return &kv.Result{Index: a.idx, OK: true}, a.w.Delete(prefixed(aclPolicyNamePrefix, old.Name))
	case acl.OpTokenSet:
		return a.setToken(c)
	case acl.OpTokenDelete:
		if c.ID == acl.AnonymousAccessorID {
			return refuse(kv.ErrInvalid, "Deletion of the builtin anonymous token is not permitted")
		}
		old, err := a.token(c.ID)
		if err != nil || old == nil {
			return &kv.Result{Index: a.idx, OK: true}, err
		}
		if err := a.w.Delete(prefixed(aclTokenPrefix, old.AccessorID)); err != nil {
			return nil, err
		}
		return &kv.Result{Index: a.idx, OK: true}, a.w.Delete(prefixed(aclSecretPrefix, old.SecretID))
	case acl.OpPeerSecret:
		if cur, err := readString(a.txn, metaPeerSecret); err != nil || cur != "" || c.ID == "" {
			return &kv.Result{Index: a.idx, OK: true}, err
		}
		return &kv.Result{Index: a.idx, OK: true}, a.w.Set(metaPeerSecret, []byte(c.ID))
	}
	return refuse(kv.ErrInvalid, "unknown ACL operation %q", c.Op)
}

func (a *aclApply) setPolicy(c *acl.Command) (*kv.Result, error) {
	if c.Policy == nil {
		return nil, kv.Errorf(kv.ErrInvalid, "policy set without a policy")
	}
	p := *c.Policy
	old, err := a.policy(p.ID)
	if err != nil {
		return nil, err
	}
	builtin, isBuiltin := acl.BuiltinPolicy(p.ID)
	if old == nil && isBuiltin {
		old = &builtin
	}
	switch {
	case c.Create && old != nil:
		return nil, kv.Errorf(kv.ErrInvalid, "Invalid Policy: a policy with ID %q already exists", p.ID)
	case !c.Create && old == nil:
		return nil, kv.Errorf(kv.ErrACLNotFound, "Cannot find policy %q", p.ID)
	case isBuiltin && p.Rules != builtin.Rules:
		return nil, kv.Errorf(kv.ErrInvalid, "Changing the Rules for the builtin %s policy is not permitted", builtin.Name)
	}
	holder, err := readString(a.txn, prefixed(aclPolicyNamePrefix, p.Name))
	if err != nil {
		return nil, err
	}
	// A built-in's own name stays its own (not its aliases: a policy
	// stored under one before raftkv had the built-in keeps it).
	named, reserved := acl.BuiltinPolicyByName(p.Name)
	if (holder != "" && holder != p.ID) || (reserved && named.Name == p.Name && named.ID != p.ID) {
		return nil, kv.Errorf(kv.ErrInvalid, "Invalid Policy: A Policy with Name %q already exists", p.Name)
	}
	p.CreateIndex, p.ModifyIndex = a.idx, a.idx
	if old != nil && old.CreateIndex != 0 {
		p.CreateIndex = old.CreateIndex
	}
	if old != nil && old.Name != p.Name {
		if err := a.w.Delete(prefixed(aclPolicyNamePrefix, old.Name)); err != nil {
			return nil, err
		}
	}
	if err := a.w.Set(prefixed(aclPolicyNamePrefix, p.Name), []byte(p.ID)); err != nil {
		return nil, err
	}
	enc, _ := json.Marshal(&p)
	if err := a.w.Set(prefixed(aclPolicyPrefix, p.ID), enc); err != nil {
		return nil, err
	}
	return &kv.Result{Index: a.idx, OK: true, Entries: []kv.Entry{{Key: p.ID, Value: enc}}}, nil
}

func (a *aclApply) setToken(c *acl.Command) (*kv.Result, error) {
	if c.Token == nil {
		return nil, kv.Errorf(kv.ErrInvalid, "token set without a token")
	}
	t := *c.Token
	old, err := a.token(t.AccessorID)
	if err != nil {
		return nil, err
	}
	if old == nil {
		if b, ok := acl.BuiltinToken(t.AccessorID); ok {
			old = &b
		}
	}
	switch {
	case c.Create && old != nil:
		return nil, kv.Errorf(kv.ErrInvalid, "Invalid Token: AccessorID is already in use")
	case !c.Create && old == nil:
		return nil, kv.Errorf(kv.ErrACLNotFound, "Cannot find token %q", t.AccessorID)
	case old != nil && t.SecretID != "" && t.SecretID != old.SecretID:
		return nil, kv.Errorf(kv.ErrInvalid, "Changing a tokens SecretID is not permitted")
	case old != nil:
		t.SecretID = old.SecretID
	default:
		holder, err := a.tokenBySecret(t.SecretID)
		if err != nil {
			return nil, err
		}
		if holder != nil || t.SecretID == acl.AnonymousSecretID {
			return nil, kv.Errorf(kv.ErrInvalid, "Invalid Token: SecretID is already in use")
		}
	}
	// Links name policies by ID or by name; stored by ID only.
	links := make([]acl.PolicyLink, 0, len(t.Policies))
	seen := map[string]bool{}
	for _, l := range t.Policies {
		id := l.ID
		if id == "" {
			if id, err = readString(a.txn, prefixed(aclPolicyNamePrefix, l.Name)); err != nil {
				return nil, err
			}
			if b, ok := acl.BuiltinPolicyByName(l.Name); id == "" && ok {
				id = b.ID
			}
			if id == "" {
				return nil, kv.Errorf(kv.ErrInvalid, "No such ACL policy with name %q", l.Name)
			}
		} else if p, err := a.policy(id); err != nil {
			return nil, err
		} else if _, builtin := acl.BuiltinPolicy(id); p == nil && !builtin {
			return nil, kv.Errorf(kv.ErrInvalid, "No such ACL policy with ID %q", id)
		}
		if !seen[id] {
			seen[id] = true
			links = append(links, acl.PolicyLink{ID: id})
		}
	}
	t.Policies = links
	return a.putToken(&t, old)
}

// putToken stores t (replacing old, if any) with its indexes and time.
func (a *aclApply) putToken(t, old *acl.Token) (*kv.Result, error) {
	t.CreateIndex, t.ModifyIndex = a.idx, a.idx
	t.CreateTime = time.Unix(0, a.now).UTC()
	if old != nil && old.CreateIndex != 0 {
		t.CreateIndex, t.CreateTime = old.CreateIndex, old.CreateTime
	}
	enc, _ := json.Marshal(t)
	if err := a.w.Set(prefixed(aclTokenPrefix, t.AccessorID), enc); err != nil {
		return nil, err
	}
	if err := a.w.Set(prefixed(aclSecretPrefix, t.SecretID), []byte(t.AccessorID)); err != nil {
		return nil, err
	}
	return a.result(t), nil
}

func (a *aclApply) result(t *acl.Token) *kv.Result {
	enc, _ := json.Marshal(t)
	return &kv.Result{Index: a.idx, OK: true, Entries: []kv.Entry{{Key: t.AccessorID, Value: enc}}}
}

func (a *aclApply) policy(id string) (*acl.Policy, error) { return readPolicy(a.txn, id) }
func (a *aclApply) token(accessor string) (*acl.Token, error) {
	return readToken(a.txn, accessor)
}

func (a *aclApply) tokenBySecret(secret string) (*acl.Token, error) {
	return readTokenBySecret(a.txn, secret)
}

func readJSON(txn *badger.Txn, key []byte, v any) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func readString(txn *badger.Txn, key []byte) (string, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	v, err := item.ValueCopy(nil)
	return string(v), err
}

func readPolicy(txn *badger.Txn, id string) (*acl.Policy, error) {
	var p acl.Policy
	if ok, err := readJSON(txn, prefixed(aclPolicyPrefix, id), &p); !ok || err != nil {
		return nil, err
	}
	return &p, nil
}

func readToken(txn *badger.Txn, accessor string) (*acl.Token, error) {
	var t acl.Token
	if ok, err := readJSON(txn, prefixed(aclTokenPrefix, accessor), &t); !ok || err != nil {
		return nil, err
	}
	return &t, nil
}

func readTokenBySecret(txn *badger.Txn, secret string) (*acl.Token, error) {
	accessor, err := readString(txn, prefixed(aclSecretPrefix, secret))
	if err != nil || accessor == "" {
		return nil, err
	}
	return readToken(txn, accessor)
}

// ACLIndex rises with every change to policies or tokens (0: none yet).
func (f *FSM) ACLIndex() uint64 { return f.aclIndex.Load() }

// ACLBootstrapIndex is the index of the bootstrap (0: not bootstrapped).
func (f *FSM) ACLBootstrapIndex() (idx uint64, err error) {
	err = f.view(func(txn *badger.Txn) (err error) {
		idx, err = readUint(txn, metaACLBootstrap)
		return err
	})
	return idx, err
}

// PeerSecret is the credential of node-to-node calls without TLS ("" until
// the first leader chose it). It never changes once chosen, but by a
// restore (which clears the cache), so it is read from Badger once.
func (f *FSM) PeerSecret() (secret string, err error) {
	if v, _ := f.peerSecret.Load().(string); v != "" {
		return v, nil
	}
	err = f.view(func(txn *badger.Txn) (err error) {
		secret, err = readString(txn, metaPeerSecret)
		return err
	})
	if err == nil && secret != "" {
		f.peerSecret.Store(secret)
	}
	return secret, err
}

// ACLPolicy returns the stored policy id, or nil.
func (f *FSM) ACLPolicy(id string) (p *acl.Policy, err error) {
	err = f.view(func(txn *badger.Txn) (err error) {
		p, err = readPolicy(txn, id)
		return err
	})
	return p, err
}

// ACLPolicyByName returns the stored policy called name, or nil.
func (f *FSM) ACLPolicyByName(name string) (p *acl.Policy, err error) {
	err = f.view(func(txn *badger.Txn) error {
		id, err := readString(txn, prefixed(aclPolicyNamePrefix, name))
		if err != nil || id == "" {
			return err
		}
		p, err = readPolicy(txn, id)
		return err
	})
	return p, err
}

// ACLToken returns the stored token with accessor, or nil.
func (f *FSM) ACLToken(accessor string) (t *acl.Token, err error) {
	err = f.view(func(txn *badger.Txn) (err error) {
		t, err = readToken(txn, accessor)
		return err
	})
	return t, err
}

// ACLTokenBySecret returns the stored token whose secret is secret, or nil.
func (f *FSM) ACLTokenBySecret(secret string) (t *acl.Token, err error) {
	err = f.view(func(txn *badger.Txn) (err error) {
		t, err = readTokenBySecret(txn, secret)
		return err
	})
	return t, err
}

// ACLPolicies and ACLTokens list what is stored, by ID.
func (f *FSM) ACLPolicies() ([]acl.Policy, error) {
	var out []acl.Policy
	err := f.scanJSON(aclPolicyPrefix, func(b []byte) error {
		var p acl.Policy
		err := json.Unmarshal(b, &p)
		out = append(out, p)
		return err
	})
	return out, err
}

func (f *FSM) ACLTokens() ([]acl.Token, error) {
	var out []acl.Token
	err := f.scanJSON(aclTokenPrefix, func(b []byte) error {
		var t acl.Token
		err := json.Unmarshal(b, &t)
		out = append(out, t)
		return err
	})
	return out, err
}

func (f *FSM) scanJSON(prefix []byte, fn func([]byte) error) error {
	return f.view(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := it.Item().Value(fn); err != nil {
				return err
			}
		}
		return nil
	})
}
