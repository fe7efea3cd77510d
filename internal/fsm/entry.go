package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/internal/rangemap"
	"github.com/raftkv/raftkv/kv"
)

// EntryKind says what a log entry changes.
type EntryKind uint8

// The kinds of log entries. The numbers are written in v3 entries: they
// never change, and a new kind takes a new number.
const (
	KindKV             EntryKind = 1  // keys: a kv.Command
	KindSessionCreate  EntryKind = 2  // a new session
	KindSessionDestroy EntryKind = 3  // a session invalidated
	KindACL            EntryKind = 4  // a policy, token, bootstrap or peer-secret change
	KindReplicaMark    EntryKind = 5  // a server marked a read replica, or the mark cleared
	KindSplit          EntryKind = 6  // the range cut in two at a key (v3 only, entry version 4)
	KindNewRangeID     EntryKind = 7  // range 0 hands out the next range ID (v3 only, entry version 4)
	KindClose          EntryKind = 8  // no later write of the range at or below an index (v3 only, entry version 4)
	KindSessionRelease EntryKind = 9  // a range other than 0 lets go of a session range 0 invalidated (v3 only, entry version 4)
	KindReleaseDone    EntryKind = 10 // range 0: every range let go of the session (v3 only, entry version 4)
	KindKeepWhole      EntryKind = 11 // a prefix never split, or no longer (v3 only, entry version 4)
	KindRangeMeta      EntryKind = 12 // range 0: the routing copy of a range's descriptor (v3 only, entry version 5)
)

var kindNames = map[EntryKind]string{
	KindKV:             "kv",
	KindSessionCreate:  "session-create",
	KindSessionDestroy: "session-destroy",
	KindACL:            "acl",
	KindReplicaMark:    "replica-mark",
	KindSplit:          "split",
	KindNewRangeID:     "new-range-id",
	KindClose:          "close",
	KindSessionRelease: "session-release",
	KindReleaseDone:    "release-done",
	KindKeepWhole:      "keep-whole",
	KindRangeMeta:      "range-meta",
}

func (k EntryKind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one raft log entry: a kind and the body of that kind. The body
// field of the entry's kind is the only one used; a missing body (nil)
// counts as the zero value of its type, in encoding and in applying, and
// Validate refuses it.
type Entry struct {
	Kind EntryKind
	// Time is stamped by the proposer (the leader, whatever a client
	// sent); it is the only clock the state machine sees.
	Time time.Time
	// IdempotencyKey, if set, makes the entry apply at most once (while
	// the key lives): a repeat is answered with the first result. Any kind
	// may carry one. RequestDigest identifies the request the key came
	// with; the key reused with another digest is refused.
	IdempotencyKey string
	RequestDigest  []byte

	// KV is a KindKV entry's command. Its own Time, IdempotencyKey and
	// RequestDigest are ignored: the entry's are written in their place,
	// KVEntry copies them up, and DecodeEntry sets both alike.
	KV *kv.Command
	// Session is a KindSessionCreate entry's session, ID included (the
	// leader chooses it before proposing). The state machine sets its
	// CreateIndex and ModifyIndex.
	Session *kv.Session
	// SessionID is the session a KindSessionDestroy entry invalidates.
	SessionID string
	// ACL is a KindACL entry's change.
	ACL *acl.Command
	// Replica is a KindReplicaMark entry's mark.
	Replica *ReplicaMark
	// Split is a KindSplit entry's split.
	Split *Split
	// Close is a KindClose entry's close.
	Close *Close
	// Release is a KindSessionRelease entry's session: its ID, Behavior
	// and LockDelay (the range has no record of it).
	Release *kv.Session
	// Keep is a KindKeepWhole entry's prefix and whether it is kept whole
	// from now on (false: no longer).
	Keep *KeepWhole
	// Meta is a KindRangeMeta entry's descriptor.
	Meta *rangemap.Descriptor

	// Unparsed is set by DecodeEntry only, for a legacy session create or
	// ACL change whose body (a session record, ACL JSON) does not parse.
	// The versions that wrote legacy entries applied such an entry as a
	// refusal, after a step of the clock and of expiry like any entry (and
	// a session create is refused as existing before its body is looked
	// at): the state machine does the same, so that nodes of every version
	// keep the same state. Session then holds only the ID; ACL is nil.
	// EncodeEntry and EncodeLegacyEntry write such an entry back in the
	// legacy form, the only one it has.
	Unparsed *LegacyBody
}

// LegacyBody is the op value of a legacy entry whose body did not parse.
type LegacyBody struct {
	Bytes []byte
}

// ReplicaMark marks Server a read replica (a non-voter that autopilot
// never promotes) or, ReadReplica false, clears the mark.
type ReplicaMark struct {
	Server      string
	ReadReplica bool
}

// Split cuts the range at Key: the range keeps the keys before it, and a
// new range NewID, on Replicas, gets Key and the keys after it.
type Split struct {
	Key      string
	NewID    uint64
	Replicas []rangemap.Replica
}

// SplitEntry is the entry of a split.
func SplitEntry(s Split) *Entry { return &Entry{Kind: KindSplit, Split: &s} }

// Close raises the range's floor to At, so that every later write of
// the range gets an index above At, unless a write already has one (then
// the close is refused with the floor). Reads registered at At (AwaitAt)
// get the range as it is right after it.
type Close struct {
	At uint64
}

// CloseEntry is the entry of a close.
func CloseEntry(at uint64) *Entry { return &Entry{Kind: KindClose, Close: &Close{At: at}} }

// SessionReleaseEntry lets a range other than 0 go of s, which range 0
// invalidated: its keys are released (or deleted) with lock-delay, and the
// range refuses any later acquire by it.
func SessionReleaseEntry(s kv.Session) *Entry {
	return &Entry{Kind: KindSessionRelease, Release: &kv.Session{ID: s.ID, Behavior: s.Behavior, LockDelay: s.LockDelay}}
}

// KeepWhole keeps Prefix in one range (a split never cuts inside it), or,
// Keep false, no longer.
type KeepWhole struct {
	Prefix string
	Keep   bool
}

// KeepWholeEntry is the entry of a prefix kept whole or let go.
func KeepWholeEntry(prefix string, keep bool) *Entry {
	return &Entry{Kind: KindKeepWhole, Keep: &KeepWhole{Prefix: prefix, Keep: keep}}
}

// ReleaseDoneEntry tells range 0 that every other range let go of session
// id.
func ReleaseDoneEntry(id string) *Entry { return &Entry{Kind: KindReleaseDone, SessionID: id} }

// NewRangeIDEntry asks range 0 for the next range ID (in Result.Index):
// IDs are handed out in one place, so two splits never pick the same.
func NewRangeIDEntry() *Entry { return &Entry{Kind: KindNewRangeID} }

// RangeMetaEntry records d in range 0's routing copy of the range map
// (kept only if newer than the copy's: see rangeMeta).
func RangeMetaEntry(d rangemap.Descriptor) *Entry {
	return &Entry{Kind: KindRangeMeta, Meta: &d}
}

// MinVersion is the entry version a node must read to apply entries of
// kind k (the version its autopilot stats report).
func (k EntryKind) MinVersion() int {
	switch k {
	case KindKV:
		return 1
	case KindSplit, KindNewRangeID, KindClose, KindSessionRelease, KindReleaseDone, KindKeepWhole:
		return entryV4
	case KindRangeMeta:
		return entryV5
	}
	return entryV3
}

// MaxIndex bounds every index the state machine hands out: JavaScript
// clients read them as doubles.
const MaxIndex = 1 << 53

// HasLegacyForm says whether entries of kind k can be written in the
// legacy form, which every release reads. The kinds of ranges cannot: a
// node must read them (MinVersion) before they are proposed at all.
func (k EntryKind) HasLegacyForm() bool { return k.MinVersion() <= entryV3 }

// KVEntry is the entry of a KV command: its Time, IdempotencyKey and
// RequestDigest become the entry's.
func KVEntry(c *kv.Command) *Entry {
	return &Entry{Kind: KindKV, Time: c.Time, IdempotencyKey: c.IdempotencyKey, RequestDigest: c.RequestDigest, KV: c}
}

// SessionCreateEntry creates session s, whose ID the leader has chosen.
func SessionCreateEntry(s kv.Session) *Entry {
	return &Entry{Kind: KindSessionCreate, Session: &s}
}

// SessionDestroyEntry invalidates session id.
func SessionDestroyEntry(id string) *Entry {
	return &Entry{Kind: KindSessionDestroy, SessionID: id}
}

// ACLEntry applies ACL change c.
func ACLEntry(c *acl.Command) *Entry {
	return &Entry{Kind: KindACL, ACL: c}
}

// ReplicaMarkEntry marks server a read replica (readReplica) or clears the mark.
func ReplicaMarkEntry(server string, readReplica bool) *Entry {
	return &Entry{Kind: KindReplicaMark, Replica: &ReplicaMark{Server: server, ReadReplica: readReplica}}
}

// Log entry encoding (see DESIGN.md, "Log entries"):
//
//	v1, v2: a kv.Command (codec.go). Every KV entry is written so, and so
//	        was every entry before v3: a session, ACL or replica change as
//	        a command of one op with an internal verb.
//	v3:     3 kind:byte time:varint(unix ns, 0: none) idemKey:bytes digest:bytes body
//
// v3 bodies, by kind (bool := 0 | 1, strings as bytes):
//
//	session-create:  id name node lockDelay:varint(ns) behavior ttl strings create:uvarint modify:uvarint
//	session-destroy: id
//	replica-mark:    server readReplica:bool
//	acl:             op create:bool policy? token? id
//	  policy?      := 0 | 1 id name description rules create:uvarint modify:uvarint
//	  token?       := 0 | 1 accessor secret description links local:bool createTime create:uvarint modify:uvarint
//	  links        := 0 (nil) | n+1:uvarint (id name)*n
//	  createTime   := 0 (the zero time) | 1 sec:varint nsec:uvarint (UTC)
//	                | 2 sec:varint nsec:uvarint offset:varint (seconds east of UTC)
//	strings := 0 (nil) | n+1:uvarint bytes*n
//
// The kinds of ranges (entry version 4; range-meta 5), in the same form:
//
//	split:           key newID:uvarint n:uvarint (node voter:bool)*n
//	new-range-id:    (none)
//	close:           at:uvarint
//	session-release: id behavior lockDelay:varint(ns)
//	release-done:    id
//	keep-whole:      prefix keep:bool
//	range-meta:      descriptor (rangemap's encoding, as bytes)
//
// KV entries are never written as v3, and v3 has no KV body: older nodes
// must keep reading every KV write during a rolling upgrade.
const entryV3 = 3

// entryV4 is v3 with the kinds of ranges (split). Its entries are written
// in the v3 form; the version says which kinds a node knows.
const entryV4 = 4

// entryV5 adds the routing copy of the range map (range-meta).
const entryV5 = 5

// EntryVersion is the newest form of log entries this build reads and
// writes (see DESIGN.md, and package group's logform.go for when a leader
// may write it).
const EntryVersion = entryV5

var errCorruptEntry = errors.New("corrupt entry")

// EncodeEntry serialises e for the raft log: a KV entry in the v1/v2
// command encoding (EncodeEntry(KVEntry(c)) == EncodeCommand(c)), any other
// kind as v3, which only nodes of this version or later can apply. Until
// every member of the cluster can, proposers must write EncodeLegacyEntry
// instead. Deterministic: the same Entry gives the same bytes.
func EncodeEntry(e *Entry) []byte {
	if e.Kind == KindKV || e.Unparsed != nil && (e.Kind == KindSessionCreate || e.Kind == KindACL) {
		return EncodeLegacyEntry(e)
	}
	b := []byte{entryV3, byte(e.Kind)}
	b = binary.AppendVarint(b, unixNano(e.Time))
	b = appendBytes(b, []byte(e.IdempotencyKey))
	b = appendBytes(b, e.RequestDigest)
	switch e.Kind {
	case KindSessionCreate:
		var s kv.Session
		if e.Session != nil {
			s = *e.Session
		}
		b = appendString(b, s.ID)
		b = appendString(b, s.Name)
		b = appendString(b, s.Node)
		b = binary.AppendVarint(b, int64(s.LockDelay))
		b = appendString(b, s.Behavior)
		b = appendString(b, s.TTL)
		b = appendStrings(b, s.NodeChecks)
		b = binary.AppendUvarint(b, s.CreateIndex)
		b = binary.AppendUvarint(b, s.ModifyIndex)
	case KindSessionDestroy:
		b = appendString(b, e.SessionID)
	case KindReplicaMark:
		var m ReplicaMark
		if e.Replica != nil {
			m = *e.Replica
		}
		b = appendString(b, m.Server)
		b = appendBool(b, m.ReadReplica)
	case KindACL:
		var c acl.Command
		if e.ACL != nil {
			c = *e.ACL
		}
		b = appendACL(b, &c)
	case KindSplit:
		var sp Split
		if e.Split != nil {
			sp = *e.Split
		}
		b = appendString(b, sp.Key)
		b = binary.AppendUvarint(b, sp.NewID)
		b = binary.AppendUvarint(b, uint64(len(sp.Replicas)))
		for _, r := range sp.Replicas {
			b = appendString(b, r.Node)
			b = appendBool(b, r.Voter)
		}
	case KindClose:
		var c Close
		if e.Close != nil {
			c = *e.Close
		}
		b = binary.AppendUvarint(b, c.At)
	case KindSessionRelease:
		var r kv.Session
		if e.Release != nil {
			r = *e.Release
		}
		b = appendString(b, r.ID)
		b = appendString(b, r.Behavior)
		b = binary.AppendVarint(b, int64(r.LockDelay))
	case KindReleaseDone:
		b = appendString(b, e.SessionID)
	case KindKeepWhole:
		var k KeepWhole
		if e.Keep != nil {
			k = *e.Keep
		}
		b = appendString(b, k.Prefix)
		b = appendBool(b, k.Keep)
	case KindRangeMeta:
		var d rangemap.Descriptor
		if e.Meta != nil {
			d = *e.Meta
		}
		b = appendBytes(b, rangemap.AppendDescriptor(nil, d))
	}
	return b
}

// EncodeLegacyEntry serialises e as the versions before v3 did, which
// every node reads: a kv.Command in the v1/v2 encoding, a non-KV change
// as its one op with an internal verb (kv.VerbSessionCreate with the
// session's ID in Session and its record in Value, kv.VerbSessionDestroy,
// kv.VerbReadReplica with Value "1" or none, kv.VerbACL with the change as
// JSON). An entry of no known kind is written as a command without ops.
func EncodeLegacyEntry(e *Entry) []byte { return EncodeCommand(e.legacyCommand()) }

func (e *Entry) legacyCommand() *kv.Command {
	c := &kv.Command{Time: e.Time, IdempotencyKey: e.IdempotencyKey, RequestDigest: e.RequestDigest}
	var op kv.Op
	switch e.Kind {
	case KindKV:
		if e.KV != nil {
			c.Ops = e.KV.Ops
		}
		return c
	case KindSessionCreate:
		var s kv.Session
		if e.Session != nil {
			s = *e.Session
		}
		op = kv.Op{Verb: kv.VerbSessionCreate, Session: s.ID}
		if e.Unparsed != nil {
			op.Value = e.Unparsed.Bytes
		} else {
			op.Value = encodeSessionRecord(&s)
		}
	case KindSessionDestroy:
		op = kv.Op{Verb: kv.VerbSessionDestroy, Session: e.SessionID}
	case KindReplicaMark:
		op = kv.Op{Verb: kv.VerbReadReplica}
		if e.Replica != nil {
			op.Key = e.Replica.Server
			if e.Replica.ReadReplica {
				op.Value = []byte("1")
			}
		}
	case KindACL:
		op = kv.Op{Verb: kv.VerbACL}
		switch {
		case e.Unparsed != nil:
			op.Value = e.Unparsed.Bytes
		case e.ACL != nil:
			op.Value = encodeACLJSON(e.ACL)
		default:
			op.Value = encodeACLJSON(&acl.Command{})
		}
	default:
		return c
	}
	c.Ops = []kv.Op{op}
	return c
}

// DecodeEntry parses a log entry of any version. A legacy command of one
// op with an internal verb becomes the entry of its kind; any other
// command (internal verbs among other ops included: the state machine
// refuses those ops) is a KV entry. Errors of the v1/v2 forms are
// DecodeCommand's. It never panics.
func DecodeEntry(b []byte) (*Entry, error) {
	if len(b) > 0 && b[0] == entryV3 {
		return decodeV3(b[1:])
	}
	c, err := DecodeCommand(b)
	if err != nil {
		return nil, err
	}
	return legacyEntry(c), nil
}

// legacyEntry maps a decoded v1/v2 command to its entry, as the versions
// that wrote it dispatched it: one op with an internal verb is that change
// (its other fields ignored), anything else a KV command.
func legacyEntry(c *kv.Command) *Entry {
	e := KVEntry(c)
	if len(c.Ops) != 1 || !c.Ops[0].Verb.Internal() {
		return e
	}
	op := c.Ops[0]
	e.KV = nil
	switch op.Verb {
	case kv.VerbSessionCreate:
		e.Kind = KindSessionCreate
		s, err := DecodeSession(op.Value)
		if err != nil {
			s, e.Unparsed = &kv.Session{}, &LegacyBody{Bytes: op.Value}
		}
		s.ID = op.Session
		e.Session = s
	case kv.VerbSessionDestroy:
		e.Kind, e.SessionID = KindSessionDestroy, op.Session
	case kv.VerbReadReplica:
		e.Kind, e.Replica = KindReplicaMark, &ReplicaMark{Server: op.Key, ReadReplica: len(op.Value) > 0}
	case kv.VerbACL:
		e.Kind = KindACL
		if a, err := decodeACLJSON(op.Value); err != nil {
			e.Unparsed = &LegacyBody{Bytes: op.Value}
		} else {
			e.ACL = a
		}
	}
	return e
}

func decodeV3(b []byte) (*Entry, error) {
	d := decoder{b: b, corrupt: errCorruptEntry}
	e := &Entry{Kind: EntryKind(d.byte())}
	if t := d.varint(); t != 0 {
		e.Time = time.Unix(0, t)
	}
	e.IdempotencyKey = string(d.bytes())
	if v := d.bytes(); len(v) > 0 {
		e.RequestDigest = append([]byte(nil), v...)
	}
	if d.err != nil {
		return nil, fmt.Errorf("v3 entry: %w", d.err)
	}
	switch e.Kind {
	case KindSessionCreate:
		s := &kv.Session{ID: d.string(), Name: d.string(), Node: d.string(), LockDelay: time.Duration(d.varint())}
		s.Behavior, s.TTL = d.string(), d.string()
		s.NodeChecks = d.strings()
		s.CreateIndex, s.ModifyIndex = d.uvarint(), d.uvarint()
		e.Session = s
	case KindSessionDestroy:
		e.SessionID = d.string()
	case KindReplicaMark:
		e.Replica = &ReplicaMark{Server: d.string(), ReadReplica: d.bool()}
	case KindACL:
		e.ACL = d.aclCommand()
	case KindSplit:
		sp := &Split{Key: d.string(), NewID: d.uvarint()}
		n := d.uvarint()
		if n > maxSplitReplicas {
			return nil, fmt.Errorf("v3 split entry: %w: %d replicas", errCorruptEntry, n)
		}
		for range n {
			sp.Replicas = append(sp.Replicas, rangemap.Replica{Node: d.string(), Voter: d.bool()})
		}
		e.Split = sp
	case KindClose:
		e.Close = &Close{At: d.uvarint()}
	case KindSessionRelease:
		e.Release = &kv.Session{ID: d.string(), Behavior: d.string(), LockDelay: time.Duration(d.varint())}
	case KindReleaseDone:
		e.SessionID = d.string()
	case KindKeepWhole:
		e.Keep = &KeepWhole{Prefix: d.string(), Keep: d.bool()}
	case KindRangeMeta:
		if raw := d.bytes(); d.err == nil {
			desc, rest, err := rangemap.DecodeDescriptor(raw)
			if err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("v3 range-meta entry: %w: %v", errCorruptEntry, err)
			}
			e.Meta = &desc
		}
	case KindNewRangeID:
	case KindKV:
		return nil, fmt.Errorf("v3 entry: %w: a KV entry is written as a v1/v2 command, never as v3", errCorruptEntry)
	default:
		return nil, fmt.Errorf("v3 entry: %w: unknown kind %d", errCorruptEntry, e.Kind)
	}
	if d.err != nil {
		return nil, fmt.Errorf("v3 %s entry: %w", e.Kind, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("v3 %s entry: %w: %d trailing bytes", e.Kind, errCorruptEntry, len(d.b))
	}
	return e, nil
}

// Limits are a node's bounds on what it accepts: the zero value takes
// the defaults (kv.DefaultMaxValueBytes, kv.LowestSessionTTLMin).
type Limits struct {
	MaxValueBytes int
	SessionTTLMin time.Duration
}

// Validate checks what does not depend on the state: for a KV entry
// kv.Command.Validate's rules and no internal verb (those changes are
// entries of their own kinds); for the others that the body is there and
// has what its kind needs. A session create may still lack its ID, which
// the leader chooses before proposing.
func (e *Entry) Validate(l Limits) error {
	maxValue := l.MaxValueBytes
	ttlMin := max(l.SessionTTLMin, kv.LowestSessionTTLMin)
	if e.Kind != KindKV && len(e.IdempotencyKey) > kv.MaxIdempotencyKeySize { // a KV command checks its own
		return fmt.Errorf("%w: idempotency key over %d bytes", kv.ErrInvalid, kv.MaxIdempotencyKeySize)
	}
	if e.Unparsed != nil {
		return fmt.Errorf("%w: %s entry whose legacy body does not parse", kv.ErrInvalid, e.Kind)
	}
	missing := func(what string) error {
		return fmt.Errorf("%w: %s entry without %s", kv.ErrInvalid, e.Kind, what)
	}
	switch e.Kind {
	case KindKV:
		if e.KV == nil {
			return missing("a command")
		}
		if err := e.KV.Validate(maxValue); err != nil { // first: its refusals keep their order
			return err
		}
		for i, op := range e.KV.Ops {
			if op.Verb.Internal() {
				return fmt.Errorf("%w: op %d: %s is not a KV operation", kv.ErrInvalid, i, op.Verb)
			}
		}
		if e.KV.IdempotencyKey != e.IdempotencyKey || string(e.KV.RequestDigest) != string(e.RequestDigest) {
			return fmt.Errorf("%w: the command's idempotency key or request digest differs from its entry's", kv.ErrInvalid)
		}
		return nil
	case KindSessionCreate:
		if e.Session == nil {
			return missing("a session")
		}
		// Consul's wording, which clients match on, so not wrapped.
		return e.Session.Validate(ttlMin)
	case KindSessionDestroy:
		if e.SessionID == "" {
			return kv.Errorf(kv.ErrInvalid, "Missing session") // Consul's words
		}
		return nil
	case KindReplicaMark:
		if e.Replica == nil || e.Replica.Server == "" {
			return missing("a server")
		}
		return nil
	case KindACL:
		if e.ACL == nil {
			return missing("an ACL change")
		}
		return validateACL(e.ACL)
	case KindSplit:
		if e.Split == nil {
			return missing("a split")
		}
		return e.Split.validate()
	case KindNewRangeID:
		return nil
	case KindSessionRelease:
		if e.Release == nil || e.Release.ID == "" {
			return missing("a session")
		}
		return nil
	case KindReleaseDone:
		if e.SessionID == "" {
			return missing("a session")
		}
		return nil
	case KindRangeMeta:
		if e.Meta == nil {
			return missing("a descriptor")
		}
		return nil
	case KindKeepWhole:
		if e.Keep == nil || e.Keep.Prefix == "" {
			return missing("a prefix")
		}
		if len(e.Keep.Prefix) > kv.MaxKeyBytes {
			return fmt.Errorf("%w: prefix is %d bytes, limit %d", kv.ErrInvalid, len(e.Keep.Prefix), kv.MaxKeyBytes)
		}
		return nil
	case KindClose:
		if e.Close == nil || e.Close.At == 0 {
			return missing("an index to close at")
		}
		if e.Close.At >= MaxIndex {
			return fmt.Errorf("%w: a close at %d, at or above 2^53", kv.ErrInvalid, e.Close.At)
		}
		if e.IdempotencyKey != "" {
			return fmt.Errorf("%w: a close is not a client's write", kv.ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("%w: log entry of unknown kind %d", kv.ErrInvalid, e.Kind)
}

// maxSplitReplicas bounds the replicas a split names.
const maxSplitReplicas = 16

// validate checks what does not depend on the range: the key's form, an
// ID for the new range, and replicas with at least one voter, none twice.
func (sp *Split) validate() error {
	switch {
	case sp.Key == "" || !strings.HasSuffix(sp.Key, "/"):
		return fmt.Errorf("%w: split key %q must end with \"/\"", kv.ErrInvalid, sp.Key)
	case len(sp.Key) > kv.MaxKeyBytes:
		return fmt.Errorf("%w: split key is %d bytes, limit %d", kv.ErrInvalid, len(sp.Key), kv.MaxKeyBytes)
	case sp.NewID == 0:
		return fmt.Errorf("%w: a split needs the new range's ID", kv.ErrInvalid)
	case len(sp.Replicas) > maxSplitReplicas:
		return fmt.Errorf("%w: a split names %d replicas, at most %d", kv.ErrInvalid, len(sp.Replicas), maxSplitReplicas)
	}
	voters, seen := 0, map[string]bool{}
	for _, r := range sp.Replicas {
		if r.Node == "" || seen[r.Node] {
			return fmt.Errorf("%w: split replica %q empty or named twice", kv.ErrInvalid, r.Node)
		}
		seen[r.Node] = true
		if r.Voter {
			voters++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%w: a split needs at least one voting replica", kv.ErrInvalid)
	}
	return nil
}

// validateACL checks what the HTTP API checked before an ACL change
// reached the state machine: a policy's name and rules
// (acl.ValidatePolicy). Everything else (a missing ID, an unknown policy,
// an unknown operation) is the state machine's to refuse, with the words
// it always used. A token's time must survive the legacy form (JSON);
// one decoded from a request always does.
func validateACL(c *acl.Command) error {
	if c.Op == acl.OpPolicySet && c.Policy != nil {
		if err := acl.ValidatePolicy(c.Policy); err != nil {
			return err // Consul's wording, which clients match on
		}
	}
	if c.Token != nil {
		if err := checkJSONTime(c.Token.CreateTime); err != nil {
			return fmt.Errorf("%w: ACL %s: token CreateTime: %v", kv.ErrInvalid, c.Op, err)
		}
	}
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendStrings keeps nil and empty apart: 0 is nil, n+1 is n strings.
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(ss))+1)
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendACL(b []byte, c *acl.Command) []byte {
	b = appendString(b, string(c.Op))
	b = appendBool(b, c.Create)
	b = appendBool(b, c.Policy != nil)
	if p := c.Policy; p != nil {
		b = appendString(b, p.ID)
		b = appendString(b, p.Name)
		b = appendString(b, p.Description)
		b = appendString(b, p.Rules)
		b = binary.AppendUvarint(b, p.CreateIndex)
		b = binary.AppendUvarint(b, p.ModifyIndex)
	}
	b = appendBool(b, c.Token != nil)
	if t := c.Token; t != nil {
		b = appendString(b, t.AccessorID)
		b = appendString(b, t.SecretID)
		b = appendString(b, t.Description)
		if t.Policies == nil {
			b = append(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(len(t.Policies))+1)
			for _, l := range t.Policies {
				b = appendString(b, l.ID)
				b = appendString(b, l.Name)
			}
		}
		b = appendBool(b, t.Local)
		b = appendTime(b, t.CreateTime)
		b = binary.AppendUvarint(b, t.CreateIndex)
		b = binary.AppendUvarint(b, t.ModifyIndex)
	}
	return appendString(b, c.ID)
}

// appendTime writes an instant and its zone's offset: a time in UTC comes
// back in UTC, any other in a fixed zone of the same offset (a zone's name
// and rules are not kept; JSON keeps neither either). The zero time, what
// a command's token usually holds, takes one byte.
func appendTime(b []byte, t time.Time) []byte {
	utc := t.Location() == time.UTC
	if utc && t.IsZero() {
		return append(b, timeZero)
	}
	tag := byte(timeUTC)
	if !utc {
		tag = timeOffset
	}
	b = append(b, tag)
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	if utc {
		return b
	}
	_, offset := t.Zone()
	return binary.AppendVarint(b, int64(offset))
}

// Time tags.
const (
	timeZero   = 0
	timeUTC    = 1
	timeOffset = 2
)

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) bool() bool {
	switch v := d.byte(); {
	case d.err != nil:
		return false
	case v > 1:
		d.failf("bool %d", v)
		return false
	default:
		return v == 1
	}
}

func (d *decoder) strings() []string {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.b)) { // each takes at least one byte
		d.failf("%d strings in %d bytes", n, len(d.b))
		return nil
	}
	out := make([]string, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, d.string())
	}
	return out
}

func (d *decoder) time() time.Time {
	tag := d.byte()
	if d.err != nil || tag == timeZero {
		return time.Time{}
	}
	if tag > timeOffset {
		d.failf("time tag %d", tag)
		return time.Time{}
	}
	sec, nsec := d.varint(), d.uvarint()
	var offset int64
	if tag == timeOffset {
		offset = d.varint()
	}
	switch {
	case d.err != nil:
		return time.Time{}
	case nsec >= 1e9:
		d.failf("time with %d ns", nsec)
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if tag == timeOffset {
		if offset <= -86400 || offset >= 86400 {
			d.failf("time zone offset of %d s", offset)
			return time.Time{}
		}
		t = t.In(time.FixedZone("", int(offset)))
	}
	if err := checkJSONTime(t); err != nil {
		d.failf("%v", err)
		return time.Time{}
	}
	return t
}

// checkJSONTime refuses a time that the legacy (JSON) form cannot carry:
// JSON's years are 0 to 9999 and its zone offsets under a day.
func checkJSONTime(t time.Time) error {
	_, offset := t.Zone()
	if y := t.Year(); y < 0 || y > 9999 || offset <= -86400 || offset >= 86400 {
		return fmt.Errorf("time %d s (offset %d s) out of range", t.Unix(), offset)
	}
	return nil
}

func (d *decoder) aclCommand() *acl.Command {
	c := &acl.Command{Op: acl.Op(d.string()), Create: d.bool()}
	if d.bool() {
		c.Policy = &acl.Policy{ID: d.string(), Name: d.string(), Description: d.string(), Rules: d.string()}
		c.Policy.CreateIndex, c.Policy.ModifyIndex = d.uvarint(), d.uvarint()
	}
	if d.bool() {
		t := &acl.Token{AccessorID: d.string(), SecretID: d.string(), Description: d.string()}
		if n := d.uvarint(); n > 0 && d.err == nil {
			n--
			if n > uint64(len(d.b))/2 { // each link takes at least two bytes
				d.failf("%d policy links in %d bytes", n, len(d.b))
			} else {
				t.Policies = make([]acl.PolicyLink, 0, n)
				for i := uint64(0); i < n && d.err == nil; i++ {
					t.Policies = append(t.Policies, acl.PolicyLink{ID: d.string(), Name: d.string()})
				}
			}
		}
		t.Local = d.bool()
		t.CreateTime = d.time()
		t.CreateIndex, t.ModifyIndex = d.uvarint(), d.uvarint()
		c.Token = t
	}
	c.ID = d.string()
	return c
}

// The legacy ACL body: JSON, as EncodeACLCommand wrote it.
func encodeACLJSON(c *acl.Command) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("fsm: encode ACL command: %v", err)) // plain structs always encode
	}
	return b
}

func decodeACLJSON(b []byte) (*acl.Command, error) {
	var c acl.Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
